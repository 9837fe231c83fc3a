// Clang's thread-safety analysis attributes (-Wthread-safety), in the manner of leveldb's
// port/thread_annotations.h. Other compilers see nothing. `scripts/build --clang-tsa` builds the
// project with clang and the analysis as errors (CI runs it).
#pragma once

#if defined(__clang__)
#define QF_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define QF_THREAD_ANNOTATION(x)
#endif

#define QF_CAPABILITY(x) QF_THREAD_ANNOTATION(capability(x))
#define QF_SCOPED_CAPABILITY QF_THREAD_ANNOTATION(scoped_lockable)
#define QF_GUARDED_BY(x) QF_THREAD_ANNOTATION(guarded_by(x))
#define QF_PT_GUARDED_BY(x) QF_THREAD_ANNOTATION(pt_guarded_by(x))
#define QF_ACQUIRE(...) QF_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define QF_ACQUIRE_SHARED(...) QF_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define QF_RELEASE(...) QF_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define QF_RELEASE_SHARED(...) QF_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define QF_RELEASE_GENERIC(...) QF_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define QF_REQUIRES(...) QF_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define QF_REQUIRES_SHARED(...) QF_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define QF_EXCLUDES(...) QF_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define QF_NO_THREAD_SAFETY_ANALYSIS QF_THREAD_ANNOTATION(no_thread_safety_analysis)
