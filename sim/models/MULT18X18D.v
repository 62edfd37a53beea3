// MULT18X18D -- behavioural simulation model of the Lattice ECP5 sysDSP 18x18 multiplier, used when
// equispike netlists that instantiate the primitive are built with Verilator (rtl/_dsp.py,
// RegisteredMul(target="ecp5")).
//
// This is OUR READING of Lattice's documentation (ECP5 and ECP5-5G sysDSP Usage Guide, FPGA-TN-02205,
// formerly TN1267; ECP5 family data sheet), not Lattice's simulation library, and it is restricted to
// the configuration equispike uses. Port list and parameter defaults are those of the Yosys
// blackbox (share/lattice/cells_bb_ecp5.v), so that any instance of the primitive connects.
//
// Datapath: A/B pins -> optional input registers (REG_INPUTA_CLK, REG_INPUTB_CLK) -> 18x18
// unsigned multiplier -> optional pipeline register (REG_PIPELINE_CLK) -> optional output register
// (REG_OUTPUT_CLK) -> P[35:0]. Each register stage is present when its *_CLK is "CLK0" and a wire
// when it is "NONE". All registers power up at 0.
//
// Honoured parameters and ports:
//   REG_INPUTA_CLK, REG_INPUTB_CLK, REG_PIPELINE_CLK, REG_OUTPUT_CLK : "NONE" or "CLK0"
//   REG_{INPUTA,INPUTB,PIPELINE,OUTPUT}_CE / _RST                   : "CE0" / "RST0" only
//   RESETMODE : "SYNC" (RST0 sampled on the CLK0 rising edge) or "ASYNC" (RST0 clears at once);
//               reset has priority over the clock enable CE0 (our reading; equispike ties
//               CE0 = 1 and RST0 = 0, so the priority is not exercised by its netlists)
//   CLK0, CE0, RST0, A[17:0], B[17:0], P[35:0], SIGNEDP (= 0, unsigned product)
// Required values (anything else stops the simulation with $fatal at time 0):
//   REG_INPUTC_CLK = "NONE", MULT_BYPASS = "DISABLED", CAS_MATCH_REG = "FALSE",
//   SOURCEB_MODE = "B_SHIFT", HIGHSPEED_CLK = "NONE", CLK0_DIV = "ENABLED", GSR = "DISABLED"
//   (no GSR net is modelled).
// Required port values, checked on every CLK0 rising edge ($fatal otherwise): SIGNEDA = SIGNEDB = 0
//   (unsigned operands only), SOURCEA = SOURCEB = 0 (operands from the A/B pins, no shift chain).
// Not modelled: CLK1..3, CE1..3, RST1..3, the C input, the SRIA/SRIB shift inputs; the outputs
//   ROA, ROB, ROC (operands towards the ALU54B) and SROA, SROB (shift chain) are driven X.
//
// Checked against: tests/test_dsp.py (every product of random and corner operands, built both as
// this primitive and as the plain Amaranth registers of RegisteredMul(target=None), against Python
// integer products with the stated 3-cycle latency, bit exact) and tests/test_layernorm_unit.py (a
// LayerNorm unit built with dsp_target="ecp5" vs the golden model). The register stages are those
// nextpnr-ecp5 times as registered for such an instance (input and output registers on CLK0).
// It has not been compared with Lattice's own simulation library or with hardware.
`default_nettype none
// lint waivers (verilator --lint-only -Wall): string parameters compared with literals of other
// lengths (WIDTHEXPAND), parameters and inputs of the unmodelled features (UNUSEDPARAM,
// UNUSEDSIGNAL), registers with a power-up value and a reset (PROCASSINIT)
/* verilator lint_off WIDTHEXPAND */
/* verilator lint_off UNUSEDPARAM */
/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off PROCASSINIT */
module MULT18X18D(
    A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0, B17, B16, B15,
    B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0, C17, C16, C15, C14, C13, C12,
    C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK3,
    CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0, SRIA17, SRIA16, SRIA15, SRIA14,
    SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8, SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1,
    SRIA0, SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8, SRIB7,
    SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0, SROA17, SROA16, SROA15, SROA14, SROA13, SROA12,
    SROA11, SROA10, SROA9, SROA8, SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0, SROB17,
    SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7, SROB6, SROB5,
    SROB4, SROB3, SROB2, SROB1, SROB0, ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9,
    ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0, ROB17, ROB16, ROB15, ROB14, ROB13, ROB12,
    ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0, ROC17, ROC16, ROC15,
    ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0,
    P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17,
    P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0, SIGNEDP);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0;
    input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0;
    input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0;
    input SIGNEDA;
    input SIGNEDB;
    input SOURCEA;
    input SOURCEB;
    input CLK3, CLK2, CLK1, CLK0;
    input CE3, CE2, CE1, CE0;
    input RST3, RST2, RST1, RST0;
    input SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8, SRIA7,
        SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0;
    input SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8, SRIB7,
        SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0;
    output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7,
        SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0;
    output SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7,
        SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0;
    output ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5,
        ROA4, ROA3, ROA2, ROA1, ROA0;
    output ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5,
        ROB4, ROB3, ROB2, ROB1, ROB0;
    output ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5,
        ROC4, ROC3, ROC2, ROC1, ROC0;
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
        P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0;
    output SIGNEDP;

    // -- configuration checks -----------------------------------------------------------------
    initial begin
        if (REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0")
            $fatal(1, "MULT18X18D model: REG_INPUTA_CLK = %s unsupported (NONE or CLK0)", REG_INPUTA_CLK);
        if (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0")
            $fatal(1, "MULT18X18D model: REG_INPUTB_CLK = %s unsupported (NONE or CLK0)", REG_INPUTB_CLK);
        if (REG_PIPELINE_CLK != "NONE" && REG_PIPELINE_CLK != "CLK0")
            $fatal(1, "MULT18X18D model: REG_PIPELINE_CLK = %s unsupported (NONE or CLK0)",
                   REG_PIPELINE_CLK);
        if (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0")
            $fatal(1, "MULT18X18D model: REG_OUTPUT_CLK = %s unsupported (NONE or CLK0)", REG_OUTPUT_CLK);
        if (REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_PIPELINE_CE != "CE0"
            || REG_OUTPUT_CE != "CE0")
            $fatal(1, "MULT18X18D model: only CE0 is modelled (REG_*_CE = \"CE0\")");
        if (REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0" || REG_PIPELINE_RST != "RST0"
            || REG_OUTPUT_RST != "RST0")
            $fatal(1, "MULT18X18D model: only RST0 is modelled (REG_*_RST = \"RST0\")");
        if (RESETMODE != "SYNC" && RESETMODE != "ASYNC")
            $fatal(1, "MULT18X18D model: RESETMODE = %s unsupported (SYNC or ASYNC)", RESETMODE);
        if (REG_INPUTC_CLK != "NONE")
            $fatal(1, "MULT18X18D model: the C input is not modelled (REG_INPUTC_CLK must be NONE)");
        if (MULT_BYPASS != "DISABLED")
            $fatal(1, "MULT18X18D model: MULT_BYPASS = %s unsupported (DISABLED)", MULT_BYPASS);
        if (CAS_MATCH_REG != "FALSE")
            $fatal(1, "MULT18X18D model: CAS_MATCH_REG = %s unsupported (FALSE)", CAS_MATCH_REG);
        if (SOURCEB_MODE != "B_SHIFT")
            $fatal(1, "MULT18X18D model: SOURCEB_MODE = %s unsupported (B_SHIFT)", SOURCEB_MODE);
        if (HIGHSPEED_CLK != "NONE")
            $fatal(1, "MULT18X18D model: HIGHSPEED_CLK = %s unsupported (NONE)", HIGHSPEED_CLK);
        if (CLK0_DIV != "ENABLED")
            $fatal(1, "MULT18X18D model: CLK0_DIV = %s unsupported (ENABLED)", CLK0_DIV);
        if (GSR != "DISABLED")
            $fatal(1, "MULT18X18D model: GSR = %s unsupported (DISABLED: no GSR net is modelled)", GSR);
    end

    always @(posedge CLK0) begin
        if (SIGNEDA != 1'b0 || SIGNEDB != 1'b0)
            $fatal(1, "MULT18X18D model: signed operands (SIGNEDA/SIGNEDB = 1) are not modelled");
        if (SOURCEA != 1'b0 || SOURCEB != 1'b0)
            $fatal(1, "MULT18X18D model: shift-chain operands (SOURCEA/SOURCEB = 1) are not modelled");
    end

    // -- datapath ---------------------------------------------------------------------------------
    localparam IN_A_REG = (REG_INPUTA_CLK == "CLK0");
    localparam IN_B_REG = (REG_INPUTB_CLK == "CLK0");
    localparam PIPE_REG = (REG_PIPELINE_CLK == "CLK0");
    localparam OUT_REG = (REG_OUTPUT_CLK == "CLK0");

    wire [17:0] a_pin = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_pin = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_reg = 18'd0, b_reg = 18'd0;
    reg [35:0] p_pipe = 36'd0, p_out = 36'd0;

    wire [17:0] a_mul = IN_A_REG ? a_reg : a_pin;
    wire [17:0] b_mul = IN_B_REG ? b_reg : b_pin;
    wire [35:0] product = {18'd0, a_mul} * {18'd0, b_mul};
    wire [35:0] p_stage = PIPE_REG ? p_pipe : product;
    wire [35:0] p_final = OUT_REG ? p_out : p_stage;

    generate
        if (RESETMODE == "ASYNC") begin : g_async
            always @(posedge CLK0 or posedge RST0) begin
                if (RST0) begin
                    a_reg <= 18'd0;
                    b_reg <= 18'd0;
                    p_pipe <= 36'd0;
                    p_out <= 36'd0;
                end else if (CE0) begin
                    a_reg <= a_pin;
                    b_reg <= b_pin;
                    p_pipe <= product;
                    p_out <= p_stage;
                end
            end
        end else begin : g_sync
            always @(posedge CLK0) begin
                if (RST0) begin
                    a_reg <= 18'd0;
                    b_reg <= 18'd0;
                    p_pipe <= 36'd0;
                    p_out <= 36'd0;
                end else if (CE0) begin
                    a_reg <= a_pin;
                    b_reg <= b_pin;
                    p_pipe <= product;
                    p_out <= p_stage;
                end
            end
        end
    endgenerate

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
            P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p_final;
    assign SIGNEDP = 1'b0;

    // not modelled
    assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5,
            ROA4, ROA3, ROA2, ROA1, ROA0} = {18{1'bx}};
    assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5,
            ROB4, ROB3, ROB2, ROB1, ROB0} = {18{1'bx}};
    assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5,
            ROC4, ROC3, ROC2, ROC1, ROC0} = {18{1'bx}};
    assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7,
            SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = {18{1'bx}};
    assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7,
            SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = {18{1'bx}};
endmodule
/* verilator lint_on PROCASSINIT */
/* verilator lint_on UNUSEDSIGNAL */
/* verilator lint_on UNUSEDPARAM */
/* verilator lint_on WIDTHEXPAND */

`default_nettype wire
