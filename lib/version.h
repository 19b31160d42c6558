/*
 * lib/version.h: shardhook's version, one place for --version, the start-up line and
 * the shardhook_build_info metric.
 */
#ifndef SHARDHOOK_LIB_VERSION_H
#define SHARDHOOK_LIB_VERSION_H

#define SHARDHOOK_VERSION "0.1.0"

#endif
