/* The C and C++ suites' test harness. A suite is a list of test functions run by RUN_TEST; each
 * makes any number of CHECKs and counts as one test, passed when none of its checks failed. Each
 * test prints "ok NAME" or "FAILED NAME" as it ends, and report() prints the suite's summary,
 * "SUITE: N passed, N failed (N checks)", counting tests, and gives the exit status. Each test
 * program includes this header once. */
#ifndef RIVET_TEST_CHECK_H
#define RIVET_TEST_CHECK_H

#include <stdio.h>

/* Checks made so far, passed and failed, over the whole suite. */
static int passed, failed;
/* Tests run so far, passed and failed. */
static int tests_passed, tests_failed;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      passed++;                                            \
    } else {                                               \
      failed++;                                            \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
    }                                                      \
  } while (0)

/* Records the end of test `name`, which failed when any check failed since `failed_before`. */
static inline void end_test(const char *name, int failed_before) {
  if (failed == failed_before) {
    tests_passed++;
    printf("ok %s\n", name);
  } else {
    tests_failed++;
    printf("FAILED %s\n", name);
  }
  fflush(stdout);
  fflush(stderr);
}

#ifdef __cplusplus
#include <exception>
/* Runs one test; an exception escaping it fails the test, and the suite goes on. */
template <class Test>
static inline void run_test(const char *name, Test test) {
  const int before = failed;
  try {
    test();
  } catch (const std::exception &e) {
    CHECK(false, "%s: unexpected exception: %s", name, e.what());
  } catch (...) {
    CHECK(false, "%s: unexpected exception of an unknown type", name);
  }
  end_test(name, before);
}
#else
/* Runs one test. */
static inline void run_test(const char *name, void (*test)(void)) {
  const int before = failed;
  test();
  end_test(name, before);
}
#endif

/* Runs test function `fn`, named after it. */
#define RUN_TEST(fn) run_test(#fn, fn)

/* Prints the suite's summary line, counting tests, and returns the process's exit status. */
static inline int report(const char *suite) {
  printf("%s: %d passed, %d failed (%d checks)\n", suite, tests_passed, tests_failed, passed + failed);
  return tests_failed == 0 && failed == 0 ? 0 : 1;
}

#endif
