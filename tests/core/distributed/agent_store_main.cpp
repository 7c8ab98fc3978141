// What torchrun's agent does before it starts its workers: serve a c10d
// TCPStore at MASTER_ADDR:MASTER_PORT and keep it while they run. Prints
// "ready" once it listens, then serves until a signal ends it.
// Usage: agent_store PORT
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: agent_store PORT\n");
    return 2;
  }
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(std::atoi(argv[1]));
  o.isServer = true;
  o.waitWorkers = false;  // the agent does not count its workers here
  o.timeout = std::chrono::seconds(300);
  c10d::TCPStore store("127.0.0.1", o);
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) pause();
}
