"""The core's end-to-end harness: whole-image runs compared with the golden SNN, spike for spike."""
