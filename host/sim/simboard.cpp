// The simulated board: a Verilator build of the SoC top (gateware/link/soc.py)
// serving its byte stream on a TCP port (see docs/device.md).
//
//   simboard [--port N] [--cpb N] [--busy HEX] [--stats]
//
// Prints "LISTENING <port>" once bound (port 0: a free one), serves one client at
// a time and keeps the SoC's state across connections; exits on SIGTERM/SIGINT or
// when stdin closes.  A second client, while one is connected, is answered its
// first bytes with the bytes of --busy (the host's BUSY error frame) and closed
// when it goes.  When a client goes,
// the bytes it sent that the SoC has not taken yet go with it (at most 64 KiB are
// read ahead), so a new client never waits behind an old one's backlog.  The clock runs while there is input to feed or the SoC is
// busy (its `idle` output low), otherwise the harness sleeps in poll().
//
// Built with -DSIMBOARD_UART the SoC's ports are uart_rx / uart_tx: a C++ UART
// drives uart_rx bit by bit (8N1, --cpb clocks per bit, back to back) and samples
// uart_tx in the middle of each bit, so the whole PHY is simulated.
//
// With --stats, after each connection closes it prints
// "SESSION <clocks> <bytes in> <bytes out> <simulated> <ns>": the clocks from the first
// byte received from the client to the last byte sent back, then the clocks simulated
// and the nanoseconds spent simulating them (the simulation's own speed).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "Vsoc.h"
#include "verilated.h"

// Verilator escapes the double underscore of Amaranth's stream port names (rx__valid).

static volatile sig_atomic_t stop_requested = 0;
static const size_t READ_AHEAD = 65536;  // client bytes read ahead of the SoC

// Whether the client at `fd` has closed its end (without waiting).
static bool client_gone(int fd) {
    pollfd p = {fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}
static void on_signal(int) { stop_requested = 1; }

struct Board {
    Vsoc* top;
    uint64_t clocks = 0;
    int cpb;
    std::deque<uint8_t> in;    // bytes from the client, not yet taken by the SoC
    std::vector<uint8_t> out;  // bytes from the SoC, not yet sent to the client
#ifdef SIMBOARD_UART
    // Transmitter into uart_rx.
    int tx_bit = -1;  // -1 idle, 0 start, 1..8 data, 9 stop
    int tx_count = 0;
    uint8_t tx_byte = 0;
    // Receiver of uart_tx.
    int rx_bit = -1;
    int rx_count = 0;
    uint8_t rx_byte = 0;
#endif

    explicit Board(int cpb_) : cpb(cpb_) {
        top = new Vsoc;
#ifdef SIMBOARD_UART
        top->uart_rx = 1;
#else
        top->rx___05Fvalid = 0;
        top->tx___05Fready = 1;
#endif
        // No reset input: the SoC starts from its registers' initial values.
        clocks = 0;
    }
    ~Board() {
        top->final();
        delete top;
    }

    uint64_t last_out = 0;  // the clock of the last byte out
    void push(uint8_t b) {
        out.push_back(b);
        last_out = clocks;
    }

    bool busy() const {
#ifdef SIMBOARD_UART
        return !in.empty() || tx_bit >= 0 || rx_bit >= 0 || !top->idle || !top->uart_tx;
#else
        return !in.empty() || !top->idle;
#endif
    }

    // One clock: the inputs set with clk low and evaluated (the SoC's outputs
    // are then those of this clock), then the rising edge.
    void tick() {
        top->clk = 0;
#ifdef SIMBOARD_UART
        top->eval();
        // Our transmitter: one bit every cpb clocks.
        if (tx_bit < 0 && !in.empty()) {
            tx_byte = in.front();
            in.pop_front();
            tx_bit = 0;
            tx_count = 0;
        }
        if (tx_bit >= 0) {
            top->uart_rx = tx_bit == 0 ? 0 : tx_bit == 9 ? 1 : (tx_byte >> (tx_bit - 1)) & 1;
            if (++tx_count == cpb) {
                tx_count = 0;
                if (++tx_bit == 10) tx_bit = -1;
            }
        } else {
            top->uart_rx = 1;
        }
        // Our receiver: a falling edge starts a byte, each bit sampled mid-way.
        int line = top->uart_tx;
        if (rx_bit < 0) {
            if (!line) {
                rx_bit = 0;
                rx_count = 0;
            }
        } else if (++rx_count == (rx_bit == 0 ? cpb / 2 : cpb)) {
            rx_count = 0;
            if (rx_bit == 0) {
                rx_bit = line ? -1 : 1;  // a glitch, or the start bit
            } else if (rx_bit <= 8) {
                rx_byte = (rx_byte >> 1) | (line ? 0x80 : 0);
                rx_bit++;
            } else {
                if (line) push(rx_byte);
                else fprintf(stderr, "simboard: framing error from the SoC\n");
                rx_bit = -1;
            }
        }
#else
        bool offer = !in.empty();
        top->rx___05Fvalid = offer;
        if (offer) top->rx___05Fpayload = in.front();
        top->tx___05Fready = 1;
        top->eval();
        if (offer && top->rx___05Fready) in.pop_front();
        if (top->tx___05Fvalid) push(top->tx___05Fpayload);
#endif
        top->clk = 1;
        top->eval();
        clocks++;
    }
};

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    int port = 0, cpb = 16;
    bool stats = false;
    std::vector<uint8_t> busy_frame;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--port" && i + 1 < argc) port = atoi(argv[++i]);
        else if (a == "--busy" && i + 1 < argc) {
            std::string hex = argv[++i];
            for (size_t j = 0; j + 1 < hex.size(); j += 2)
                busy_frame.push_back((uint8_t)strtol(hex.substr(j, 2).c_str(), nullptr, 16));
        }
        else if (a == "--cpb" && i + 1 < argc) cpb = atoi(argv[++i]);
        else if (a == "--stats") stats = true;
        else {
            fprintf(stderr, "simboard: unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    if (cpb < 4) {
        fprintf(stderr, "simboard: --cpb must be at least 4\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (bind(lfd, (sockaddr*)&addr, sizeof addr) != 0 || listen(lfd, 1) != 0) {
        fprintf(stderr, "simboard: cannot listen on port %d: %s\n", port, strerror(errno));
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(lfd, (sockaddr*)&addr, &len);
    printf("LISTENING %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    Board board(cpb);
    int cfd = -1;
    uint64_t first_in = 0, last_out = 0, bytes_in = 0, bytes_out = 0;
    uint64_t sim_clocks = 0, sim_ns = 0;  // clocks simulated and the time they took
    struct Refused {
        int fd;
        bool told;  // sent BUSY
    };
    std::vector<Refused> refused;          // second clients, until they go
    bool started = false;
    uint8_t buf[65536];
    // The client has gone: its unread bytes and what the SoC has not taken go too,
    // and a delimiter ends the frame they may have cut (an empty frame is ignored).
    auto end_client = [&]() {
        close(cfd);
        cfd = -1;
        board.in.assign(1, 0);
        if (stats) {
            printf("SESSION %llu %llu %llu %llu %llu\n",
                   (unsigned long long)(started ? last_out - first_in : 0),
                   (unsigned long long)bytes_in, (unsigned long long)bytes_out,
                   (unsigned long long)sim_clocks, (unsigned long long)sim_ns);
            sim_clocks = sim_ns = 0;
            fflush(stdout);
        }
    };
    while (!stop_requested) {
        bool busy = board.busy();
        bool room = board.in.size() < READ_AHEAD;
        pollfd fds[3];
        int n = 0;
        fds[n++] = {0, POLLIN, 0};
        fds[n++] = {lfd, POLLIN, 0};
        if (cfd >= 0) fds[n++] = {cfd, (short)((room ? POLLIN : 0) | POLLRDHUP), 0};
        int rc = poll(fds, n, busy ? 0 : 200);
        if (rc < 0 && errno != EINTR) break;
        if (rc > 0 && fds[0].revents) {
            ssize_t got = read(0, buf, sizeof buf);
            if (got <= 0) break;  // stdin closed: the parent is gone
        }
        // Second clients: BUSY as the answer to their first bytes (sent at once, it
        // could arrive before the client is ready for it: pyserial empties the input
        // when it opens), then drained until they go (closing with their requests
        // unread would reset the connection, BUSY perhaps unread).
        for (size_t r = 0; r < refused.size();) {
            ssize_t got = recv(refused[r].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                close(refused[r].fd);
                refused.erase(refused.begin() + r);
                continue;
            }
            if (got > 0 && !refused[r].told) {
                if (!busy_frame.empty())
                    send(refused[r].fd, busy_frame.data(), busy_frame.size(), 0);
                shutdown(refused[r].fd, SHUT_WR);
                refused[r].told = true;
            }
            r++;
        }
        if (rc > 0 && cfd >= 0 && fds[2].revents) {
            ssize_t got = 0;
            bool gone = fds[2].revents & (POLLRDHUP | POLLHUP | POLLERR);
            if (!gone && room) {
                got = recv(cfd, buf, std::min(sizeof buf, READ_AHEAD - board.in.size()), 0);
                gone = got <= 0;
            }
            if (gone) {
                end_client();
            } else if (got > 0) {
                if (!started) {
                    started = true;
                    first_in = board.clocks;
                }
                bytes_in += got;
                board.in.insert(board.in.end(), buf, buf + got);
            }
        }
        if (rc > 0 && fds[1].revents) {
            int nfd = accept(lfd, nullptr, nullptr);
            if (nfd >= 0 && cfd >= 0 && !client_gone(cfd)) {  // a second client: BUSY
                if (refused.size() < 16) refused.push_back({nfd, false});
                else close(nfd);
            } else if (nfd >= 0) {
                if (cfd >= 0) end_client();
                cfd = nfd;
                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                started = false;
                bytes_in = bytes_out = 0;
            }
        }
        // Run the clock in slices, sending the output after each.
        timespec s0, s1;
        clock_gettime(CLOCK_MONOTONIC, &s0);
        uint64_t c0 = board.clocks;
        for (int i = 0; i < 4096 && board.busy(); i++) board.tick();
        clock_gettime(CLOCK_MONOTONIC, &s1);
        sim_clocks += board.clocks - c0;
        sim_ns += (s1.tv_sec - s0.tv_sec) * 1000000000LL + (s1.tv_nsec - s0.tv_nsec);
        if (!board.out.empty()) {
            if (cfd >= 0) {
                size_t off = 0;
                while (off < board.out.size()) {
                    ssize_t sent = send(cfd, board.out.data() + off, board.out.size() - off, 0);
                    if (sent <= 0) break;
                    off += sent;
                }
                bytes_out += off;
            }
            last_out = board.last_out;
            board.out.clear();  // with no client the bytes are lost, as on a wire
        }
    }
    if (cfd >= 0) close(cfd);
    close(lfd);
    return 0;
}
