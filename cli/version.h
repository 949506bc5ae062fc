// The version `udpmsg --version` prints. Bump it here, and only here.
#ifndef UDPMSG_CLI_VERSION_H_
#define UDPMSG_CLI_VERSION_H_

namespace udpmsg::cli {

inline constexpr char kVersion[] = "0.1.0";

// What `udpmsg --version` adds after the version: builds without NDEBUG
// (Bazel's default fastbuild, -c dbg) keep their assertions and are slower.
#ifdef NDEBUG
inline constexpr char kBuildNote[] = "";
#else
inline constexpr char kBuildNote[] = " (debug build: assertions on)";
#endif

}  // namespace udpmsg::cli

#endif  // UDPMSG_CLI_VERSION_H_
