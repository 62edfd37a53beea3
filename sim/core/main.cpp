// Verilator main of the core harness: streams images in, writes the trace and the output beats.
//
// usage: core_sim IN OUT ROWS_PER_IMAGE BEATS_PER_IMAGE SEED IDLE_PERMILLE STALL_PERMILLE MAX_CYCLES
//        [+verilator+... ...]
// SEED is the stimulus seed (idle and stall cycles). The power-up values are Verilator's: the build
// leaves every value the Verilog does not initialize to run time (--x-assign unique --x-initial
// unique) and the plusargs after the positional arguments choose them, e.g.
// +verilator+rand+reset+2 +verilator+seed+3 (random, seed 3) or +verilator+rand+reset+0 (all 0).
// Every input is driven (clk low, rst high) before the first evaluation.
// IN: one hex word per input row (the i_stream payload), images back to back.
// OUT: "T <cycle> <hex trace word>" for every trace beat, "O <cycle> <hex payload>" for every output
// beat, "I <image> <first input cycle> <last output cycle>" per image, "E <cycle> <message>" for
// every stream-contract violation, and a final "D <cycles>" line.
// (Verilator spells the ports i_stream__valid etc. as i_stream___05Fvalid.)
// The o_stream is checked cycle by cycle: valid held until ready, payload stable while stalled, no
// beat beyond the expected ones (also during a drain of 1000 cycles after the last image).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "Vtop.h"
#include "verilated.h"

using Words = std::vector<uint32_t>;

template <class T> static Words get_words(const T& v, size_t n) {
    Words w(n, 0);
    uint64_t x = (uint64_t)v;
    w[0] = (uint32_t)x;
    if (n > 1) w[1] = (uint32_t)(x >> 32);
    return w;
}
template <std::size_t N> static Words get_words(const VlWide<N>& v, size_t n) {
    Words w(n, 0);
    for (size_t i = 0; i < N && i < n; i++) w[i] = v[i];
    return w;
}
template <class T> static void set_words(T& v, const Words& w) {
    uint64_t x = w.empty() ? 0 : w[0];
    if (w.size() > 1) x |= (uint64_t)w[1] << 32;
    v = (T)x;
}
template <std::size_t N> static void set_words(VlWide<N>& v, const Words& w) {
    for (size_t i = 0; i < N; i++) v[i] = i < w.size() ? w[i] : 0;
}
static std::string hex(const Words& w) {
    std::string s;
    char buf[16];
    for (size_t i = w.size(); i-- > 0;) {
        snprintf(buf, sizeof buf, "%08x", w[i]);
        s += buf;
    }
    return s;
}
static Words parse_hex(const std::string& s, size_t n) {
    Words w(n, 0);
    size_t len = s.size();
    for (size_t i = 0; i < len; i++) {
        char ch = s[len - 1 - i];
        uint32_t d = (ch >= '0' && ch <= '9') ? ch - '0' : (ch | 0x20) - 'a' + 10;
        if (i / 8 < n) w[i / 8] |= d << (4 * (i % 8));
    }
    return w;
}

#define NW(bits) (((bits) + 31) / 32)

int main(int argc, char** argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: %s IN OUT ROWS BEATS SEED IDLE_PERMILLE STALL_PERMILLE MAX_CYCLES "
                "[+verilator+...]\n", argv[0]);
        return 2;
    }
    for (int i = 9; i < argc; i++) {
        if (argv[i][0] != '+') { fprintf(stderr, "unexpected argument %s\n", argv[i]); return 2; }
    }
    // before the model exists: its constructor draws the power-up values (+verilator+rand+reset+,
    // +verilator+seed+; the positional arguments are not plusargs and are ignored here)
    Verilated::commandArgs(argc, argv);
    FILE* fin = fopen(argv[1], "r");
    FILE* fout = fopen(argv[2], "w");
    if (!fin || !fout) { fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]); return 2; }
    long rows_per = atol(argv[3]), beats_per = atol(argv[4]);
    std::mt19937_64 rng(strtoull(argv[5], nullptr, 10));
    int idle = atoi(argv[6]), stall = atoi(argv[7]);
    uint64_t max_cycles = strtoull(argv[8], nullptr, 10);
    Vtop* top = new Vtop;
    const size_t in_w = NW(IN_BITS), out_w = NW(OUT_BITS), tr_w = NW(TRACE_BITS);
    std::vector<Words> rows;
    char line[1 << 16];
    while (fgets(line, sizeof line, fin)) {
        std::string s(line);
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
        if (!s.empty()) rows.push_back(parse_hex(s, in_w));
    }
    if (rows_per <= 0 || rows.size() % rows_per) { fprintf(stderr, "input rows not a multiple of %ld\n", rows_per); return 2; }
    long images = rows.size() / rows_per;
    auto tick = [&]() { top->clk = 1; top->eval(); top->clk = 0; top->eval(); };
    top->clk = 0; top->rst = 1; top->i_stream___05Fvalid = 0; top->o_stream___05Fready = 0; top->eval();
    tick(); tick();
    top->rst = 0; top->eval();
    uint64_t cycle = 0;
    long img = 0, row = 0, beats = 0, errors = 0;
    uint64_t first_in = 0;
    bool prev_stalled = false;
    Words prev_payload;
    long drain = -1;
    while (cycle < max_cycles) {
        // drive inputs for this cycle
        bool sending = img < images && row < rows_per;
        bool v_in = sending && (idle == 0 || (long)(rng() % 1000) >= idle);
        top->i_stream___05Fvalid = v_in;
        if (v_in) set_words(top->i_stream___05Fpayload, rows[img * rows_per + row]);
        top->o_stream___05Fready = stall == 0 || (long)(rng() % 1000) >= stall;
        top->eval();
        // sample before the rising edge
        Words tr = get_words(top->spike_trace, tr_w);
        if (tr[0] & 1) fprintf(fout, "T %llu %s\n", (unsigned long long)cycle, hex(tr).c_str());
        bool ov = top->o_stream___05Fvalid, ordy = top->o_stream___05Fready;
        Words pl = get_words(top->o_stream___05Fpayload, out_w);
        if (prev_stalled) {
            if (!ov) { fprintf(fout, "E %llu o_stream valid dropped before ready\n", (unsigned long long)cycle); errors++; }
            else if (pl != prev_payload) { fprintf(fout, "E %llu o_stream payload changed while stalled\n", (unsigned long long)cycle); errors++; }
        }
        prev_stalled = ov && !ordy;
        prev_payload = pl;
        if (ov && ordy) {
            if (img >= images || row < rows_per) {
                fprintf(fout, "E %llu output beat before the image was sent or after the last one\n", (unsigned long long)cycle);
                errors++;
            }
            fprintf(fout, "O %llu %s\n", (unsigned long long)cycle, hex(pl).c_str());
            beats++;
            if (beats == beats_per) {
                fprintf(fout, "I %ld %llu %llu\n", img, (unsigned long long)first_in, (unsigned long long)cycle);
                img++; row = 0; beats = 0;
                if (img == images) drain = 1000;
            }
        }
        if (v_in && top->i_stream___05Fready) {
            if (row == 0) first_in = cycle;
            row++;
        }
        tick();
        cycle++;
        if (drain >= 0 && drain-- == 0) break;
    }
    if (img < images) { fprintf(fout, "E %llu timeout: %ld of %ld images done\n", (unsigned long long)cycle, img, images); errors++; }
    fprintf(fout, "D %llu\n", (unsigned long long)cycle);
    fclose(fout);
    top->final();
    delete top;
    return errors ? 1 : 0;
}
