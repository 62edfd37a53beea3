// Behavioural model of the Lattice ECP5 PDPW16KD block RAM (pseudo dual port: one write port,
// one read port), for Verilator runs of netlists that instantiate it
// (equispike.rtl._bram.RegisteredRAM with target="ecp5" and no initial contents, at most 512
// words). Written by equispike: the vendor model is not redistributable and Yosys ships the
// primitive as a black box only (share/lattice/cells_bb_ecp5.v, whose port and parameter list
// this module repeats).
//
// This is our reading of Lattice's ECP5 memory usage guide (FPGA-TN-02204) and of nextpnr's
// ECP5 packer (ecp5/pack.cc turns a PDPW16KD into a DP16KD bel with DATA_WIDTH_A = 36: BE[3:0]
// -> ADA[3:0], ADW[8:0] -> ADA[13:5], ADR[13:0] -> ADB[13:0], CEW -> CEA, CER -> CEB,
// OCER -> OCEB, REGMODE -> REGMODE_A and REGMODE_B), restricted to what RegisteredRAM uses, and
// it stops the simulation ($fatal) on anything outside that:
//   * DATA_WIDTH_W == DATA_WIDTH_R == 36: 512 words of 36 bits, DO[i] reads the bit written
//     through DI[i]; write word address ADW[8:0], read word address ADR[13:5] (ADR[4:0] unused
//     in this mode, required 0 at a read);
//   * a write at a CLKW edge with CEW = 1 (there is no WE pin); only whole-word writes,
//     BE[3:0] = 4'b1111, are modelled (partial writes: BE[n] would cover DI[9n+8:9n], the
//     9-bit bytes of Yosys' share/lattice/brams_16kd.txt);
//   * a read at a CLKR edge with CER = 1 loads the read latch; REGMODE OUTREG only: DO is a
//     register loaded from the latch at an edge with OCER = 1 (NOREG is not modelled);
//   * CSDECODE_W = CSDECODE_R = 0b000 with CSW and CSR held at 3'b000 (always selected; chip
//     select decoding is not modelled); RESETMODE SYNC with RST held low (reset is not
//     modelled); CLKWMUX/CLKRMUX not inverted;
//   * no initial contents: the INITVAL_xx parameters are not declared, so an instance that
//     sets one does not elaborate (the 36-bit INITVAL layout is not modelled); the array and
//     both registers start at 0;
//   * one clock: CLKW and CLKR must be the same net (a two-clock RAM is not modelled);
//   * a read of the word that is written at the same edge is taken as undefined on the device
//     (the primitive has no WRITEMODE parameter, and we know of no statement of its
//     read-during-write behaviour): the model returns the complement of the old word, so a
//     design relying on it fails its test.
// Checked against: tests/test_registered_ram.py (this model and the inferred-memory form of
// RegisteredRAM against a reference, cycle by cycle).
/* verilator lint_off UNUSEDPARAM */
module PDPW16KD(
  input DI35, DI34, DI33, DI32, DI31, DI30, DI29, DI28, DI27, DI26, DI25, DI24, DI23, DI22, DI21, DI20, DI19, DI18, DI17, DI16, DI15, DI14, DI13, DI12, DI11, DI10, DI9, DI8, DI7, DI6, DI5, DI4, DI3, DI2, DI1, DI0,
  input ADW8, ADW7, ADW6, ADW5, ADW4, ADW3, ADW2, ADW1, ADW0,
  input BE3, BE2, BE1, BE0,
  input CEW, CLKW, CSW2, CSW1, CSW0,
  input ADR13, ADR12, ADR11, ADR10, ADR9, ADR8, ADR7, ADR6, ADR5, ADR4, ADR3, ADR2, ADR1, ADR0,
  input CER, OCER, CLKR, CSR2, CSR1, CSR0, RST,
  output DO35, DO34, DO33, DO32, DO31, DO30, DO29, DO28, DO27, DO26, DO25, DO24, DO23, DO22, DO21, DO20, DO19, DO18, DO17, DO16, DO15, DO14, DO13, DO12, DO11, DO10, DO9, DO8, DO7, DO6, DO5, DO4, DO3, DO2, DO1, DO0
);
  parameter CLKRMUX = "CLKR";
  parameter CLKWMUX = "CLKW";
  parameter DATA_WIDTH_W = 36;
  parameter DATA_WIDTH_R = 36;
  parameter GSR = "ENABLED";
  parameter REGMODE = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_W = "0b000";
  parameter CSDECODE_R = "0b000";
  parameter INIT_DATA = "STATIC";


  reg [35:0] mem [0:511];
  reg [35:0] latch, oreg;
  integer j;
  initial begin
    if (DATA_WIDTH_W != 36 || DATA_WIDTH_R != 36) begin
      $display("PDPW16KD model: DATA_WIDTH_W/R = %0d/%0d not modelled (only 36/36)",
               DATA_WIDTH_W, DATA_WIDTH_R);
      $fatal(1);
    end
    // (string parameters compared with literals of another length)
    /* verilator lint_off WIDTHEXPAND */
    if (REGMODE != "OUTREG" || RESETMODE != "SYNC" || CSDECODE_W != "0b000"
        || CSDECODE_R != "0b000" || CLKWMUX != "CLKW" || CLKRMUX != "CLKR") begin
      $display("PDPW16KD model: REGMODE/RESETMODE/CSDECODE/CLKxMUX combination not modelled");
      $fatal(1);
    end
    /* verilator lint_on WIDTHEXPAND */
    for (j = 0; j < 512; j = j + 1)
      mem[j] = 36'd0;
    latch = 36'd0;
    oreg = 36'd0;
  end

  wire [35:0] di = {DI35, DI34, DI33, DI32, DI31, DI30, DI29, DI28, DI27, DI26, DI25, DI24, DI23, DI22, DI21, DI20, DI19, DI18, DI17, DI16, DI15, DI14, DI13, DI12, DI11, DI10, DI9, DI8, DI7, DI6, DI5, DI4, DI3, DI2, DI1, DI0};
  wire [8:0] wa = {ADW8, ADW7, ADW6, ADW5, ADW4, ADW3, ADW2, ADW1, ADW0};
  wire [3:0] be = {BE3, BE2, BE1, BE0};
  wire [13:0] ad_r = {ADR13, ADR12, ADR11, ADR10, ADR9, ADR8, ADR7, ADR6, ADR5, ADR4, ADR3, ADR2, ADR1, ADR0};
  wire [8:0] ra = ad_r[13:5];
  wire wr = CEW;
  wire rd = CER;
  // a read of the word written at the same edge: undefined on the device
  wire clash = rd & wr & (ra == wa);
  always @(posedge CLKW) begin  // CLKR: the same clock (checked)
    if (CLKR !== 1'b1) begin
      $display("PDPW16KD model: CLKR must be the same clock as CLKW");
      $fatal(1);
    end
    if (RST) begin
      $display("PDPW16KD model: RST is not modelled");
      $fatal(1);
    end
    if ({CSW2, CSW1, CSW0} != 3'b000 || {CSR2, CSR1, CSR0} != 3'b000) begin
      $display("PDPW16KD model: chip selects other than 3'b000 are not modelled");
      $fatal(1);
    end
    if (wr && be != 4'b1111) begin
      $display("PDPW16KD model: partial (byte-enable) writes are not modelled (BE = %b)", be);
      $fatal(1);
    end
    if (rd && ad_r[4:0] != 5'd0) begin
      $display("PDPW16KD model: ADR[4:0] = %b at a read (unused in the 36-bit mode; tie to 0)",
               ad_r[4:0]);
      $fatal(1);
    end
    if (wr)
      mem[wa] <= di;
    if (rd)
      latch <= clash ? ~mem[ra] : mem[ra];
    if (OCER)
      oreg <= latch;
  end
  assign {DO35, DO34, DO33, DO32, DO31, DO30, DO29, DO28, DO27, DO26, DO25, DO24, DO23, DO22, DO21, DO20, DO19, DO18, DO17, DO16, DO15, DO14, DO13, DO12, DO11, DO10, DO9, DO8, DO7, DO6, DO5, DO4, DO3, DO2, DO1, DO0} = oreg;
endmodule
/* verilator lint_on UNUSEDPARAM */
