// RedisServer: a real redis-server for tests, on a free port of 127.0.0.1 in
// a directory of its own (under $TEST_TMPDIR), that keeps every write through
// a kill (append-only file, fsync on every write). It is
// redis::ServerProcess (redis/server_process.h, shared with the benchmarks)
// with its default options; see there for the usage, errors and threading.
#ifndef UDPMSG_TESTS_REDIS_REDIS_SERVER_H_
#define UDPMSG_TESTS_REDIS_REDIS_SERVER_H_

#include "redis/server_process.h"

namespace udpmsg::testing {

using RedisServer = redis::ServerProcess;

}  // namespace udpmsg::testing

#endif  // UDPMSG_TESTS_REDIS_REDIS_SERVER_H_
