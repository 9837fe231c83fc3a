// The built-in status page (GET /, GET /status): one self-contained HTML document — its CSS and
// JavaScript inline, no external asset of any kind (no script or style URL, no font, no image from
// the network) — that draws the five stages as a flow and refreshes itself every second from
// GET /monitoring/stats and GET /health of the engine that served it.
//
// What it shows and how to read it: docs/operations.md, "The status page". The elements a test
// reads carry stable attributes: `data-stage="<stage>"` on each stage of the flow (in flow
// order), `data-panel="<section of /monitoring/stats>"` on each panel, `data-field="<name>"` on
// each figure (its text is the number shown, digits grouped with commas, units outside it),
// `#health[data-health]` (`healthy`, `unhealthy`, `unreachable`, `loading`), and on <body>
// `data-state` (`loading`, `live`, `unreachable`) and `data-samples` (stats samples read so far).
#pragma once

#include <string_view>

namespace quizflow::ingress {

// The page, UTF-8. Static storage: the view stays valid for the life of the program.
std::string_view status_page_html();

// Served with this Content-Type, `Cache-Control: no-cache` and this Content-Security-Policy, which
// lets the page run its own inline script and style and reach nothing but the engine's origin.
inline constexpr std::string_view kStatusPageContentType = "text/html; charset=utf-8";
inline constexpr std::string_view kStatusPagePolicy =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

}  // namespace quizflow::ingress
