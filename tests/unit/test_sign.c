/* tests/unit/test_sign.c: Standard Webhooks signatures match the spec's example and rotate. */
#include "bridge/sign.h"
#include "lib/errors.h"
#include "tests/unit/test.h"

static char *one_key[] = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"};
static const char body[] = "{\"test\": 2432232314}";

TEST(spec_example)
{
    char out[256];
    ASSERT_EQ(br_sign(one_key, 1, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                      sizeof(body) - 1, out, sizeof(out)),
              0);
    ASSERT_STR_EQ(out, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST(rotation_signs_with_every_key)
{
    char *keys[] = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kLWtleQ=="};
    char out[256];
    ASSERT_EQ(br_sign(keys, 2, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, sizeof(body) - 1,
                      out, sizeof(out)),
              0);
    ASSERT_STR_EQ(out, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= "
                       "v1,4Wzb6tcIfznzcEHPT7GcEE5B7qzv9qwZv0ckDDA6dJo=");
}

TEST(bad_secret_and_small_buffer)
{
    char *bad[] = {"whsec_!!!"};
    char out[256];
    ASSERT_EQ(br_sign(bad, 1, "msg_x", 1, body, sizeof(body) - 1, out, sizeof(out)), SH_EINVAL);
    ASSERT_EQ(br_sign(one_key, 1, "msg_x", 1, body, sizeof(body) - 1, out, 10), SH_ETOOBIG);
}

TEST(message_ids_are_unique)
{
    char a[64], b[64];
    ASSERT_EQ(br_new_msg_id(a, sizeof(a)), 0);
    ASSERT_EQ(br_new_msg_id(b, sizeof(b)), 0);
    ASSERT_EQ(strlen(a), 28);
    ASSERT(!strncmp(a, "msg_", 4));
    ASSERT(strcmp(a, b) != 0);
}

TEST_MAIN(RUN(spec_example); RUN(rotation_signs_with_every_key); RUN(bad_secret_and_small_buffer);
          RUN(message_ids_are_unique))
