// A command-driven Verilator testbench for the NPU core (top module npu_core,
// class prefix Vcore). Python (gateware/vsim.py) writes commands on stdin and
// reads results on stdout; all payload words are packed by Python, so this file
// knows only the handshakes.
//
// Commands, one per line, numbers in hex:
//   W addr data      host write (one clock)
//   R addr           host read            -> "D data"
//   C                clear pulse (one clock)
//   B permille seed  output backpressure: ready low on permille/1000 of clocks
//   S n              run one step: the next n+1 lines are input payload words
//                    (the last one the end marker); prints every output record
//                    as "O word" and then "T clocks" for the step
//   Q                quit                 -> "X total_clocks wall_seconds"
// Errors print "E message" and exit with status 1. (Verilator escapes "__" in
// port names as "___05F": input__valid is input___05Fvalid.)

#include "Vcore.h"
#include "verilated.h"

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

static Vcore *top;
static uint64_t clocks = 0;
static uint32_t permille = 0;
static uint64_t rng_state = 1;
static const uint64_t step_limit = 100000000ULL;

static uint32_t next_random() {  // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

// Settle the inputs set by the caller with the clock low; the caller samples
// combinational outputs; then rising_edge() registers them.
static void settle() {
    top->clk = 0;
    top->eval();
}

static void rising_edge() {
    top->clk = 1;
    top->eval();
    clocks++;
}

static void fail(const char *message) {
    printf("E %s\n", message);
    fflush(stdout);
    exit(1);
}

int main(int argc, char **argv) {
    Verilated::commandArgs(argc, argv);
    top = new Vcore;
    top->rst = 1;
    settle();
    rising_edge();
    top->rst = 0;
    top->host_we = 0;
    top->host_re = 0;
    top->clear = 0;
    top->input___05Fvalid = 0;
    top->output___05Fready = 0;
    auto start = std::chrono::steady_clock::now();
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        char cmd = line[0];
        if (cmd == 'W') {
            uint64_t addr, data;
            if (sscanf(line + 1, "%" SCNx64 " %" SCNx64, &addr, &data) != 2) fail("bad W");
            top->host_addr = addr;
            top->host_wdata = data;
            top->host_we = 1;
            settle();
            if (top->busy) fail("host write while busy");
            rising_edge();
            top->host_we = 0;
        } else if (cmd == 'R') {
            uint64_t addr;
            if (sscanf(line + 1, "%" SCNx64, &addr) != 1) fail("bad R");
            top->host_addr = addr;
            top->host_re = 1;
            settle();
            rising_edge();
            top->host_re = 0;
            settle();
            if (!top->host_rvalid) fail("no read data");
            printf("D %" PRIx64 "\n", (uint64_t)top->host_rdata);
        } else if (cmd == 'C') {
            top->clear = 1;
            settle();
            rising_edge();
            top->clear = 0;
        } else if (cmd == 'B') {
            uint64_t seed;
            if (sscanf(line + 1, "%x %" SCNx64, &permille, &seed) != 2) fail("bad B");
            rng_state = seed ? seed : 1;
        } else if (cmd == 'S') {
            unsigned n;
            if (sscanf(line + 1, "%x", &n) != 1) fail("bad S");
            uint64_t *words = (uint64_t *)malloc(sizeof(uint64_t) * (n + 1));
            for (unsigned i = 0; i <= n; i++) {
                if (!fgets(line, sizeof line, stdin)) fail("missing input word");
                words[i] = strtoull(line, nullptr, 16);
            }
            uint64_t begin = clocks;
            unsigned sent = 0;
            bool done = false;
            while (!done) {
                if (clocks - begin > step_limit) fail("step did not finish");
                top->input___05Fvalid = sent <= n;
                if (sent <= n) top->input___05Fpayload = words[sent];
                top->output___05Fready = permille == 0 || next_random() % 1000 >= permille;
                settle();
                bool in_fire = top->input___05Fvalid && top->input___05Fready;
                bool out_fire = top->output___05Fvalid && top->output___05Fready;
                uint64_t record = top->output___05Fpayload;
                rising_edge();
                if (in_fire) sent++;
                if (out_fire) {
                    printf("O %" PRIx64 "\n", record);
                    if ((record & 3) == 2) done = true;
                }
            }
            top->input___05Fvalid = 0;
            top->output___05Fready = 0;
            free(words);
            printf("T %" PRIx64 "\n", clocks - begin);
        } else if (cmd == 'Q') {
            break;
        } else if (cmd != '\n' && cmd != 0) {
            fail("unknown command");
        }
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                         .count();
    printf("X %" PRIx64 " %.6f\n", clocks, seconds);
    top->final();
    delete top;
    return 0;
}
