// Behavioural model of the Lattice ECP5 DP16KD block RAM, for Verilator runs of netlists that
// instantiate it (equispike.rtl._bram.RegisteredRAM with target="ecp5"). Written by equispike:
// the vendor model is not redistributable and Yosys ships the primitive as a black box only.
//
// This is our reading of Lattice's ECP5 memory usage guide (FPGA-TN-02204) and of Yosys'
// share/lattice/brams_map_16kd.v, restricted to what RegisteredRAM uses, and it stops the
// simulation ($fatal) on anything outside that:
//   * DATA_WIDTH_A == DATA_WIDTH_B in {1, 2, 4, 9, 18}; word address = AD[13:LOW] with LOW = 4,
//     3, 2, 1, 0 for 18, 9, 4, 2, 1 bits; in the 18-bit mode AD[1:0] are byte enables (only
//     full-word writes, AD[1:0] = 2'b11, are modelled);
//   * WRITEMODE NORMAL (a writing port's output keeps its value), CSDECODE 0b000 (CS = 000
//     selects), REGMODE NOREG (DO = read latch) or OUTREG (DO = a register loaded from the latch
//     when OCE), RESETMODE SYNC with RST held low (reset is not modelled);
//   * INITVAL_xx in the 18-bit mode: 16 words per value, word i in bits 20*i .. 20*i+17;
//   * one clock: CLKA and CLKB must be the same net (a two-clock RAM is not modelled);
//   * a read of the word that the other port writes at the same edge is undefined on the device:
//     the model returns the complement of the old word, so a design relying on it fails its test.
// Checked against: tests/test_registered_ram.py (this model and the inferred-memory form of
// RegisteredRAM against a reference, cycle by cycle).
/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off UNUSEDPARAM */
/* verilator lint_off MULTIDRIVEN */
module DP16KD(
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
  input CEA, OCEA, CLKA, WEA, RSTA,
  input CSA2, CSA1, CSA0,
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
  input CEB, OCEB, CLKB, WEB, RSTB,
  input CSB2, CSB1, CSB0,
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter GSR = "ENABLED";
  parameter WID = 0;
  parameter INIT_DATA = "STATIC";
  parameter INITVAL_00 = 320'h0;
  parameter INITVAL_01 = 320'h0;
  parameter INITVAL_02 = 320'h0;
  parameter INITVAL_03 = 320'h0;
  parameter INITVAL_04 = 320'h0;
  parameter INITVAL_05 = 320'h0;
  parameter INITVAL_06 = 320'h0;
  parameter INITVAL_07 = 320'h0;
  parameter INITVAL_08 = 320'h0;
  parameter INITVAL_09 = 320'h0;
  parameter INITVAL_0A = 320'h0;
  parameter INITVAL_0B = 320'h0;
  parameter INITVAL_0C = 320'h0;
  parameter INITVAL_0D = 320'h0;
  parameter INITVAL_0E = 320'h0;
  parameter INITVAL_0F = 320'h0;
  parameter INITVAL_10 = 320'h0;
  parameter INITVAL_11 = 320'h0;
  parameter INITVAL_12 = 320'h0;
  parameter INITVAL_13 = 320'h0;
  parameter INITVAL_14 = 320'h0;
  parameter INITVAL_15 = 320'h0;
  parameter INITVAL_16 = 320'h0;
  parameter INITVAL_17 = 320'h0;
  parameter INITVAL_18 = 320'h0;
  parameter INITVAL_19 = 320'h0;
  parameter INITVAL_1A = 320'h0;
  parameter INITVAL_1B = 320'h0;
  parameter INITVAL_1C = 320'h0;
  parameter INITVAL_1D = 320'h0;
  parameter INITVAL_1E = 320'h0;
  parameter INITVAL_1F = 320'h0;
  parameter INITVAL_20 = 320'h0;
  parameter INITVAL_21 = 320'h0;
  parameter INITVAL_22 = 320'h0;
  parameter INITVAL_23 = 320'h0;
  parameter INITVAL_24 = 320'h0;
  parameter INITVAL_25 = 320'h0;
  parameter INITVAL_26 = 320'h0;
  parameter INITVAL_27 = 320'h0;
  parameter INITVAL_28 = 320'h0;
  parameter INITVAL_29 = 320'h0;
  parameter INITVAL_2A = 320'h0;
  parameter INITVAL_2B = 320'h0;
  parameter INITVAL_2C = 320'h0;
  parameter INITVAL_2D = 320'h0;
  parameter INITVAL_2E = 320'h0;
  parameter INITVAL_2F = 320'h0;
  parameter INITVAL_30 = 320'h0;
  parameter INITVAL_31 = 320'h0;
  parameter INITVAL_32 = 320'h0;
  parameter INITVAL_33 = 320'h0;
  parameter INITVAL_34 = 320'h0;
  parameter INITVAL_35 = 320'h0;
  parameter INITVAL_36 = 320'h0;
  parameter INITVAL_37 = 320'h0;
  parameter INITVAL_38 = 320'h0;
  parameter INITVAL_39 = 320'h0;
  parameter INITVAL_3A = 320'h0;
  parameter INITVAL_3B = 320'h0;
  parameter INITVAL_3C = 320'h0;
  parameter INITVAL_3D = 320'h0;
  parameter INITVAL_3E = 320'h0;
  parameter INITVAL_3F = 320'h0;

  localparam integer DW = DATA_WIDTH_A;
  localparam integer LOW = DW == 18 ? 4 : DW == 9 ? 3 : DW == 4 ? 2 : DW == 2 ? 1 : 0;
  localparam integer AW = 14 - LOW;
  localparam integer WORDS = 1 << AW;
  localparam [20479:0] INITS = {INITVAL_3F, INITVAL_3E, INITVAL_3D, INITVAL_3C, INITVAL_3B, INITVAL_3A, INITVAL_39, INITVAL_38, INITVAL_37, INITVAL_36, INITVAL_35, INITVAL_34, INITVAL_33, INITVAL_32, INITVAL_31, INITVAL_30, INITVAL_2F, INITVAL_2E, INITVAL_2D, INITVAL_2C, INITVAL_2B, INITVAL_2A, INITVAL_29, INITVAL_28, INITVAL_27, INITVAL_26, INITVAL_25, INITVAL_24, INITVAL_23, INITVAL_22, INITVAL_21, INITVAL_20, INITVAL_1F, INITVAL_1E, INITVAL_1D, INITVAL_1C, INITVAL_1B, INITVAL_1A, INITVAL_19, INITVAL_18, INITVAL_17, INITVAL_16, INITVAL_15, INITVAL_14, INITVAL_13, INITVAL_12, INITVAL_11, INITVAL_10, INITVAL_0F, INITVAL_0E, INITVAL_0D, INITVAL_0C, INITVAL_0B, INITVAL_0A, INITVAL_09, INITVAL_08, INITVAL_07, INITVAL_06, INITVAL_05, INITVAL_04, INITVAL_03, INITVAL_02, INITVAL_01, INITVAL_00};

  reg [DW-1:0] mem [0:WORDS-1];
  integer j;
  initial begin
    if (DATA_WIDTH_A != DATA_WIDTH_B || !(DW == 18 || DW == 9 || DW == 4 || DW == 2 || DW == 1)) begin
      $display("DP16KD model: DATA_WIDTH_A/B = %0d/%0d not modelled", DATA_WIDTH_A, DATA_WIDTH_B);
      $fatal(1);
    end
    if (WRITEMODE_A != "NORMAL" || WRITEMODE_B != "NORMAL" || RESETMODE != "SYNC"
        || CSDECODE_A != "0b000" || CSDECODE_B != "0b000"
        || (REGMODE_A != "NOREG" && REGMODE_A != "OUTREG")
        || (REGMODE_B != "NOREG" && REGMODE_B != "OUTREG")) begin
      $display("DP16KD model: WRITEMODE/RESETMODE/CSDECODE/REGMODE combination not modelled");
      $fatal(1);
    end
    if (DW != 18 && INITS != 0) begin
      $display("DP16KD model: INITVAL only modelled in the 18-bit mode");
      $fatal(1);
    end
    for (j = 0; j < WORDS; j = j + 1)
      mem[j] = DW == 18 ? INITS[(j / 16) * 320 + (j % 16) * 20 +: 18] : {DW{1'b0}};
  end

  // ---- port A
  wire [17:0] di_a = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [13:0] ad_a = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
  wire [AW-1:0] wa_a = ad_a[13:LOW];
  wire en_a = CEA & ({CSA2, CSA1, CSA0} == 3'b000);
  wire wr_a = en_a & WEA;
  // a read of the word the other port writes at the same edge: undefined on the device
  wire clash_a = en_a & ~WEA & wr_b & (wa_a == wa_b);
  reg [DW-1:0] latch_a, oreg_a;
  always @(posedge CLKA) begin
    if (RSTA) begin
      $display("DP16KD model: RST%s is not modelled", "A");
      $fatal(1);
    end
    if (wr_a && DW == 18 && ad_a[1:0] != 2'b11) begin
      $display("DP16KD model: partial (byte-enable) writes are not modelled");
      $fatal(1);
    end
    if (wr_a && wr_b && wa_a == wa_b) begin
      $display("DP16KD model: both ports write word %0d at the same edge", wa_a);
      $fatal(1);
    end
    if (wr_a)
      mem[wa_a] <= di_a[DW-1:0];
    else if (en_a)
      latch_a <= clash_a ? ~mem[wa_a] : mem[wa_a];
    if (OCEA)
      oreg_a <= latch_a;
  end
  wire [17:0] do_a = {{(18 - DW){1'b0}}, (REGMODE_A == "OUTREG") ? oreg_a : latch_a};
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = do_a;

  // ---- port B
  wire [17:0] di_b = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
  wire [13:0] ad_b = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
  wire [AW-1:0] wa_b = ad_b[13:LOW];
  wire en_b = CEB & ({CSB2, CSB1, CSB0} == 3'b000);
  wire wr_b = en_b & WEB;
  // a read of the word the other port writes at the same edge: undefined on the device
  wire clash_b = en_b & ~WEB & wr_a & (wa_b == wa_a);
  reg [DW-1:0] latch_b, oreg_b;
  always @(posedge CLKA) begin  // CLKB: the same clock (checked)
    if (CLKB !== 1'b1) begin
      $display("DP16KD model: CLKB must be the same clock as CLKA");
      $fatal(1);
    end
    if (RSTB) begin
      $display("DP16KD model: RST%s is not modelled", "B");
      $fatal(1);
    end
    if (wr_b && DW == 18 && ad_b[1:0] != 2'b11) begin
      $display("DP16KD model: partial (byte-enable) writes are not modelled");
      $fatal(1);
    end
    if (wr_b && wr_a && wa_b == wa_a) begin
      $display("DP16KD model: both ports write word %0d at the same edge", wa_b);
      $fatal(1);
    end
    if (wr_b)
      mem[wa_b] <= di_b[DW-1:0];
    else if (en_b)
      latch_b <= clash_b ? ~mem[wa_b] : mem[wa_b];
    if (OCEB)
      oreg_b <= latch_b;
  end
  wire [17:0] do_b = {{(18 - DW){1'b0}}, (REGMODE_B == "OUTREG") ? oreg_b : latch_b};
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = do_b;
endmodule
/* verilator lint_on MULTIDRIVEN */
/* verilator lint_on UNUSEDPARAM */
/* verilator lint_on UNUSEDSIGNAL */
