// A command-driven Verilator testbench for the NPU core (top module npu_core,
// class prefix Vcore). Python (host/sim/vsim.py) writes commands on stdin and
// reads results on stdout; all payload words are packed by Python, so this file
// knows only the handshakes.
//
// Commands, one per line, numbers in hex:
//   W addr data      host write (one clock)
//   R addr           host read            -> "D data"
//   C                clear pulse (one clock)
//   B permille seed  output backpressure: ready low on permille/1000 of clocks
//   S n              queue one step: the next n+1 lines are input payload words
//                    (the last one the end marker)
//   G                run the queued steps, streaming their input back to back
//                    (the core takes the next step's input while it computes);
//                    prints every output record as "O word" and after each
//                    step's end record "T clocks" since the previous one.
//                    Any other command runs the queued steps first.
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
#include <vector>

static Vcore *top;
static uint64_t clocks = 0;
static uint32_t permille = 0;
static uint64_t rng_state = 1;
static const uint64_t step_limit = 100000000ULL;
static std::vector<uint64_t> queue;  // input words of the queued steps
static unsigned queued_steps = 0;

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

static void run_queued() {
    if (!queued_steps) return;
    uint64_t last = clocks;
    size_t sent = 0;
    unsigned ended = 0;
    while (ended < queued_steps) {
        if (clocks - last > step_limit) fail("step did not finish");
        top->input___05Fvalid = sent < queue.size();
        if (sent < queue.size()) top->input___05Fpayload = queue[sent];
        top->output___05Fready = permille == 0 || next_random() % 1000 >= permille;
        settle();
        bool in_fire = top->input___05Fvalid && top->input___05Fready;
        bool out_fire = top->output___05Fvalid && top->output___05Fready;
        uint64_t record = top->output___05Fpayload;
        rising_edge();
        if (in_fire) sent++;
        if (out_fire) {
            printf("O %" PRIx64 "\n", record);
            if ((record & 3) == 2) {
                printf("T %" PRIx64 "\n", clocks - last);
                last = clocks;
                ended++;
            }
        }
    }
    top->input___05Fvalid = 0;
    top->output___05Fready = 0;
    queue.clear();
    queued_steps = 0;
    // Let the core return to idle (busy low) before any host access.
    for (int i = 0; i < 1000 && (settle(), top->busy); i++) rising_edge();
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
        if (cmd != 'S') run_queued();
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
            // The word comes 1 to 5 clocks after the request (host_read_latency).
            for (int wait = 1; wait < 5 && !top->host_rvalid; wait++) {
                rising_edge();
                settle();
            }
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
            for (unsigned i = 0; i <= n; i++) {
                if (!fgets(line, sizeof line, stdin)) fail("missing input word");
                queue.push_back(strtoull(line, nullptr, 16));
            }
            queued_steps++;
            continue;
        } else if (cmd == 'G') {
            run_queued();
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
