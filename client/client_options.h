// What every `refinery` verb shares: where the server is, how to print, and
// how long a call may take. Filled by main.cpp from the global flags.
#pragma once

#include <string>

namespace refinery::client {

struct ClientOptions {
  std::string server = "127.0.0.1:50051";  // --server HOST:PORT, else $REFINERY_SERVER
  bool json = false;                        // --json: machine-readable output on stdout
  double timeout_s = 120.0;                 // --timeout: deadline of each call; 0 = none
};

}  // namespace refinery::client
