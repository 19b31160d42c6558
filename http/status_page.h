/*
 * http/status_page.h: the status page's HTML, compiled into the binary. Internal to http/ (only
 * h_gateway.c serves it). Owns no state.
 */
#ifndef SHARDHOOK_HTTP_STATUS_PAGE_H
#define SHARDHOOK_HTTP_STATUS_PAGE_H

#include <stddef.h>

/* The page (constant, never freed) and its length. */
void http__status_page(const char **body, size_t *len);

#endif
