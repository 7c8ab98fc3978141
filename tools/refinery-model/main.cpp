// refinery-model: offline tool for people holding a CLIP checkpoint.
// Subcommands: info, convert, tokenize, preprocess, embed, match, eval,
// compare, bench, init, make-data, refine, one file each (commands.h).
#include <c10/util/Exception.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "core/base/error.h"
#ifdef REFINERY_HAVE_IO
#include "core/image/image_decoder.h"
#endif
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

int run(int argc, char** argv) {
  CLI::App app{"refinery-model: inspect, convert and run a CLIP checkpoint offline.\n"
               "CKPT is an OpenAI TorchScript archive, a torch.save state dict, a .safetensors file or a\n"
               "Hugging Face CLIPModel folder."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("refinery-model ") + REFINERY_VERSION);
  Command command;

  add_info_command(app, command);
  add_convert_command(app, command);
  add_init_command(app, command);
  add_bench_command(app, command);
#ifdef REFINERY_HAVE_IO
  add_tokenize_command(app, command);
  add_preprocess_command(app, command);
  add_embed_command(app, command);
  add_match_command(app, command);
  add_eval_command(app, command);
  add_compare_command(app, command);
  add_make_data_command(app, command);
  add_refine_command(app, command);
#endif

#ifdef REFINERY_HAVE_IO
  int64_t max_pixels = kDefaultMaxImagePixels;
  app.add_option("--max-image-pixels", max_pixels,
                 "Largest image (width x height) decoded; larger ones are refused from their header")
      ->capture_default_str();
  app.fallthrough();  // given before or after the subcommand
#endif
  CLI11_PARSE(app, argc, argv);
#ifdef REFINERY_HAVE_IO
  set_max_image_pixels(max_pixels);
#endif
  if (command.run) return command.run();
  return 1;
}

}  // namespace
}  // namespace refinery::model_tool

int main(int argc, char** argv) {
  try {
    return refinery::model_tool::run(argc, argv);
  } catch (const refinery::Error& e) {
    std::fprintf(stderr, "refinery-model: error: %s\n", e.what());
    return 2;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "refinery-model: error: %s\n", e.what_without_backtrace());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "refinery-model: error: %s\n", e.what());
    return 2;
  }
}
