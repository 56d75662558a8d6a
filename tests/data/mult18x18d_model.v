// A behavioural model of the ECP5 MULT18X18D, only as far as spikeforge uses it
// (tests/test_dsp.py): P = A * B (each operand signed when its SIGNED* input is
// 1), with the A and B input registers and the output register clocked by CLK0
// when REG_INPUTA_CLK / REG_INPUTB_CLK / REG_OUTPUT_CLK are "CLK0" (bypassed when
// "NONE"), CE0 high and RST0 low.  Written from the Lattice sysDSP user guide
// (TN1267); not a vendor model.
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE", parameter REG_INPUTA_CE = "CE0",
    parameter REG_INPUTA_RST = "RST0", parameter REG_INPUTB_CLK = "NONE",
    parameter REG_INPUTB_CE = "CE0", parameter REG_INPUTB_RST = "RST0",
    parameter REG_INPUTC_CLK = "NONE", parameter REG_PIPELINE_CLK = "NONE",
    parameter REG_OUTPUT_CLK = "NONE", parameter REG_OUTPUT_CE = "CE0",
    parameter REG_OUTPUT_RST = "RST0", parameter GSR = "ENABLED",
    parameter RESETMODE = "SYNC", parameter SOURCEB_MODE = "B_SHIFT",
    parameter MULT_BYPASS = "DISABLED", parameter CLK0_DIV = "ENABLED",
    parameter CLK1_DIV = "ENABLED", parameter CLK2_DIV = "ENABLED",
    parameter CLK3_DIV = "ENABLED", parameter HIGHSPEED_CLK = "NONE",
    parameter CAS_MATCH_REG = "FALSE"
) (
    input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
    input B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    input C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17,
    output P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33,
    output P34, P35
);
    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_q, b_q;
    reg sa_q, sb_q;
    always @(posedge CLK0) if (CE0) begin
        a_q <= RST0 ? 18'd0 : a;  sa_q <= RST0 ? 1'b0 : SIGNEDA;
        b_q <= RST0 ? 18'd0 : b;  sb_q <= RST0 ? 1'b0 : SIGNEDB;
    end
    wire [17:0] a_in = REG_INPUTA_CLK == "CLK0" ? a_q : a;
    wire [17:0] b_in = REG_INPUTB_CLK == "CLK0" ? b_q : b;
    wire sa = REG_INPUTA_CLK == "CLK0" ? sa_q : SIGNEDA;
    wire sb = REG_INPUTB_CLK == "CLK0" ? sb_q : SIGNEDB;
    wire [35:0] a_ext = {{18{sa & a_in[17]}}, a_in};
    wire [35:0] b_ext = {{18{sb & b_in[17]}}, b_in};
    wire [35:0] prod = a_ext * b_ext;
    reg [35:0] p_q;
    always @(posedge CLK0) if (CE0) p_q <= RST0 ? 36'd0 : prod;
    wire [35:0] p = REG_OUTPUT_CLK == "CLK0" ? p_q : prod;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20,
            P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2,
            P1, P0} = p;
endmodule
