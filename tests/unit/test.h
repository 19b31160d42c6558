/*
 * tests/unit/test.h: the few macros every unit test uses.
 *
 *   TEST(name) { ASSERT_EQ(a, b); ... }
 *   TEST_MAIN(RUN(name); RUN(other);)
 *
 * A failed assertion reports file and line and ends that test case. A case whose claim this
 * build cannot check (a heap figure under ASan, say) calls SKIP("why") instead of passing
 * quietly. The binary prints "ok"/"FAIL"/"skip name (why)" per case, then "N passed,
 * M failed" (", K skipped" added when K > 0), and exits non-zero on failure.
 */
#ifndef SHARDHOOK_TESTS_UNIT_TEST_H
#define SHARDHOOK_TESTS_UNIT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_case_failed;
static const char *t_case_skipped;
static int t_passed, t_failed, t_skipped;

#define TEST(name) static void name(void)

#define T_FAIL_(...)                                                                               \
    do {                                                                                           \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        t_case_failed = 1;                                                                         \
        return;                                                                                    \
    } while (0)

/* End this case as skipped: what it claims cannot be checked in this build. */
#define SKIP(why)                                                                                  \
    do {                                                                                           \
        t_case_skipped = (why);                                                                    \
        return;                                                                                    \
    } while (0)

#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            T_FAIL_("assertion failed: %s", #cond);                                                \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            T_FAIL_("%s == %s failed: %lld != %lld", #a, #b, a_, b_);                              \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_))                                                          \
            T_FAIL_("%s == %s failed: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",               \
                    b_ ? b_ : "(null)");                                                           \
    } while (0)

/* Compare a (pointer, length) span with a C string. */
#define ASSERT_SPAN_EQ(p, n, s)                                                                    \
    do {                                                                                           \
        const char *p_ = (p), *s_ = (s);                                                           \
        size_t n_ = (n);                                                                           \
        if (!p_ || n_ != strlen(s_) || memcmp(p_, s_, n_))                                         \
            T_FAIL_("%s == \"%s\" failed: got \"%.*s\"", #p, s_, p_ ? (int)n_ : 6,                 \
                    p_ ? p_ : "(null)");                                                           \
    } while (0)

#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            T_FAIL_("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);                     \
    } while (0)

#define RUN(name)                                                                                  \
    do {                                                                                           \
        t_case_failed = 0;                                                                         \
        t_case_skipped = NULL;                                                                     \
        name();                                                                                    \
        if (t_case_failed) {                                                                       \
            t_failed++;                                                                            \
            printf("FAIL %s\n", #name);                                                            \
        } else if (t_case_skipped) {                                                               \
            t_skipped++;                                                                           \
            printf("skip %s (%s)\n", #name, t_case_skipped);                                       \
        } else {                                                                                   \
            t_passed++;                                                                            \
            printf("ok   %s\n", #name);                                                            \
        }                                                                                          \
        fflush(stdout);                                                                            \
    } while (0)

#define TEST_MAIN(body)                                                                            \
    int main(void)                                                                                 \
    {                                                                                              \
        body;                                                                                      \
        printf("%d passed, %d failed", t_passed, t_failed);                                        \
        if (t_skipped)                                                                             \
            printf(", %d skipped", t_skipped);                                                     \
        printf("\n");                                                                              \
        return t_failed ? 1 : 0;                                                                   \
    }

#endif
