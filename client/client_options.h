// What every `refinery` verb shares: where the server is, how to print, and
// how long a call may take. Filled by main.cpp from the global flags.
#pragma once

#include <string>

namespace refinery::client {

struct ClientOptions {
  std::string server = "127.0.0.1:50051";  // --server HOST:PORT, else $REFINERY_SERVER
  bool json = false;                        // --json: machine-readable output on stdout
  double timeout_s = 120.0;                 // --timeout: deadline of each call; 0 = none
  std::string token;                        // --token, else $REFINERY_TOKEN: sent as `authorization: Bearer`
  bool tls = false;                         // --tls: TLS with the system's CA certificates
  std::string tls_ca;                       // --tls-ca PEM (implies TLS), else $REFINERY_TLS_CA
  std::string tls_cert;                     // --tls-cert PEM: this client's certificate (mutual TLS)
  std::string tls_key;                      // --tls-key PEM: its private key
  std::string tls_server_name;              // --tls-server-name: the name the server's certificate must carry
};

}  // namespace refinery::client
