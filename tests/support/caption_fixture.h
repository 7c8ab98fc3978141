// A small COCO-format caption set built from the fixture's images, for the
// trainer and job tests: N images (the fixture's 9 reused under new names
// when N > 9), each with its own captions, and optionally some files that
// are not images at all.
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/fixture.h"

namespace refinery::testing {

inline std::vector<std::string> fixture_image_names() {
  return {"astronaut.png", "camera.png",  "chelsea.png",  "coffee.png",     "exif_rotated.jpg",
          "logo.png",      "rocket.jpg",  "palette_color.png", "transparent.png"};
}

struct CaptionSetOptions {
  int images = 8;
  int captions_per_image = 1;
  int broken_images = 0;  // extra entries whose files are not images
};

// Writes <dir>/images/*, <dir>/captions.json; returns "coco:<json>:<images>".
inline std::string make_coco_caption_set(const std::string& dir, const CaptionSetOptions& o = {}) {
  const std::string images = dir + "/images";
  ::mkdir(dir.c_str(), 0755);
  ::mkdir(images.c_str(), 0755);
  const auto names = fixture_image_names();
  nlohmann::json coco = {{"images", nlohmann::json::array()}, {"annotations", nlohmann::json::array()}};
  int annotation_id = 1;
  const int total = o.images + o.broken_images;
  for (int i = 0; i < total; ++i) {
    const bool broken = i >= o.images;
    const std::string src = names[static_cast<size_t>(i) % names.size()];
    const std::string file = "img" + std::to_string(i) + (broken ? ".jpg" : src.substr(src.rfind('.')));
    write_file(images + "/" + file, broken ? std::string("this is not an image") : read_file(fixture("images/" + src)));
    coco["images"].push_back({{"id", 1000 + i}, {"file_name", file}});
    for (int c = 0; c < o.captions_per_image; ++c) {
      coco["annotations"].push_back({{"id", annotation_id++},
                                     {"image_id", 1000 + i},
                                     {"caption", "a photo number " + std::to_string(i) + " of a " +
                                                     src.substr(0, src.find('.')) + ", caption " + std::to_string(c)}});
    }
  }
  write_file(dir + "/captions.json", coco.dump());
  return "coco:" + dir + "/captions.json:" + images;
}

}  // namespace refinery::testing
