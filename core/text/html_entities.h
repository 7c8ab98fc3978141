// The HTML5 named character references, as Python's html.entities.html5
// has them: the table html.unescape (and so CLIP's tokenizer) uses.
#pragma once

namespace refinery {

// "name=HEX[,HEX]" entries separated by spaces.
const char* html5_entity_data();

}  // namespace refinery
