/*
 * http/status_page.c: the status page served at GET /. The page itself is http/status_page.html
 * (plain HTML, CSS and JavaScript in one file, no external asset, no library); the assembler's
 * .incbin puts that file's bytes into the binary as they are, so there is no generated C and no
 * build step beyond make (the Makefile makes this object depend on the .html). The page polls
 * /v1/shards, /v1/gateway, /v1/webhooks and /metrics: shard grid, start-up progress, identify
 * budget, one card per webhook with its state and last error, and live charts of events per
 * second and delivery lag that the page keeps from its own polls (docs/api.md, "GET /").
 * Owns no state.
 */
#include <string.h>

#include "http/status_page.h"

/* The path is relative to the directory make runs in (the repository root), like -I. */
__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        "http__status_page_start:\n"
        ".incbin \"http/status_page.html\"\n"
        "http__status_page_end:\n"
        ".byte 0\n"
        ".popsection\n");

extern const char http__status_page_start[] __asm__("http__status_page_start");
extern const char http__status_page_end[] __asm__("http__status_page_end");

void http__status_page(const char **body, size_t *len)
{
    *body = http__status_page_start;
    *len = (size_t)(http__status_page_end - http__status_page_start);
}
