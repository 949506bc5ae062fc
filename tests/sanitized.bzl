"""udpmsg_cc_test: a cc_test plus a twin built and run under ASan+UBSan.

`./bazelw test //...` is the one test command (README, .ci/run), so the
sanitizer runs are part of it: every test declared with udpmsg_cc_test gets
a `<name>_asan_ubsan` twin whose whole dependency graph (libraries, the
udpmsg binary a CLI test starts, the test itself) is rebuilt through a
configuration transition with AddressSanitizer, LeakSanitizer and
UndefinedBehaviorSanitizer, every report fatal. The plain build and the
sanitized one live side by side in the output tree, so neither evicts the
other from the cache.

The seeded scenario tests run 5-20x slower under the sanitizers; their twins
run 8 of the 200 seeds (UDPMSG_SIM_SEEDS), the plain tests all of them.

A test that only drives a binary as a subprocess (the CLI tests that run no
library code of their own) names it in `sanitized_binary`: its twin runs the
plain build of the test against that binary rebuilt under ASan+UBSan, which
is what is under test, instead of rebuilding the driver too.
"""

# -O1 (after .bazelrc's -O2, so it wins): the level AddressSanitizer's own
# documentation recommends, and it compiles the whole graph a second time
# markedly faster than -O2, which keeps the cold CI run in its budget.
_SANITIZER_COPTS = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
    "-fno-omit-frame-pointer",
    "-O1",
]

_SANITIZER_LINKOPTS = ["-fsanitize=address,undefined"]

# Sanitized executables link without PIE: as PIE, one carries about half a
# million relative relocations (cli/udpmsg: 538,055, 13 MB of .rela.dyn) that
# the loader applies at every start, and the CLI tests start it hundreds of
# times. Without them `udpmsg --help` starts in 146 ms instead of 196 ms, and
# the link takes 0.4 s instead of 1.0 s. Executables only (gcc's -no-pie
# beside -shared links a program's start files into a shared library), so
# it is an attribute of the test here and of //cli:udpmsg, not a --linkopt.
TWIN_EXECUTABLE_LINKOPTS = select({
    "//tests:asan_ubsan_twin": ["-no-pie"],
    "//conditions:default": [],
})

_SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    "UDPMSG_SIM_SEEDS": "8",
    # Read by //tests:sanitizer_canary_test, which checks the twins really
    # are sanitized.
    "UDPMSG_SANITIZERS": "address,undefined",
}

def _asan_ubsan_transition_impl(settings, attr):
    copts = settings["//command_line_option:copt"]
    linkopts = settings["//command_line_option:linkopt"]
    return {
        # Idempotent when the command line already asks for --config=asan.
        "//command_line_option:copt": copts + [o for o in _SANITIZER_COPTS if o not in copts],
        "//command_line_option:linkopt": linkopts + [o for o in _SANITIZER_LINKOPTS if o not in linkopts],
        "//command_line_option:strip": "never",
    }

_asan_ubsan_transition = transition(
    implementation = _asan_ubsan_transition_impl,
    inputs = [
        "//command_line_option:copt",
        "//command_line_option:linkopt",
    ],
    outputs = [
        "//command_line_option:copt",
        "//command_line_option:linkopt",
        "//command_line_option:strip",
    ],
)

# A transitioned attribute is a list in Bazel 4, a target in later ones.
def _transitioned(attribute):
    return attribute[0] if type(attribute) == "list" else attribute

def _sanitized_test_impl(ctx):
    test = _transitioned(ctx.attr.test)
    binary = test[DefaultInfo].files_to_run.executable
    runfiles = ctx.runfiles(files = [binary]).merge(test[DefaultInfo].default_runfiles)
    return _twin_providers(ctx, binary, runfiles)

# What both twin rules return: an executable linked to `binary`, its
# runfiles, and the sanitizers' environment.
def _twin_providers(ctx, binary, runfiles):
    executable = ctx.actions.declare_file(ctx.label.name)
    ctx.actions.symlink(output = executable, target_file = binary, is_executable = True)
    return [
        DefaultInfo(executable = executable, runfiles = runfiles),
        testing.TestEnvironment(_SANITIZER_ENV),
    ]

# A rule with a transition on an attribute needs this allowlist (Bazel 4).
_TRANSITION_ALLOWLIST = {
    "_allowlist_function_transition": attr.label(
        default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
    ),
}

asan_ubsan_test = rule(
    implementation = _sanitized_test_impl,
    test = True,
    attrs = dict(
        _TRANSITION_ALLOWLIST,
        test = attr.label(
            mandatory = True,
            executable = True,
            cfg = _asan_ubsan_transition,
            doc = "The cc_test to rebuild and run under ASan+UBSan.",
        ),
    ),
    doc = "Runs a cc_test rebuilt with -fsanitize=address,undefined.",
)

def _sanitized_driver_test_impl(ctx):
    binary_target = _transitioned(ctx.attr.binary)
    sanitized = binary_target[DefaultInfo].files_to_run.executable
    driver = ctx.attr.test[DefaultInfo].files_to_run.executable

    # The plain test's runfiles with the binary swapped for its sanitized
    # build at the same path (the test finds it there).
    plain = ctx.attr.test[DefaultInfo].default_runfiles.files.to_list()
    kept = [f for f in plain if f.short_path != sanitized.short_path]
    if len(kept) == len(plain):
        fail("%s does not have %s in its runfiles" % (ctx.attr.test.label, sanitized.short_path))
    runfiles = ctx.runfiles(files = kept + [driver, sanitized]).merge(
        binary_target[DefaultInfo].default_runfiles,
    )
    return _twin_providers(ctx, driver, runfiles)

asan_ubsan_driver_test = rule(
    implementation = _sanitized_driver_test_impl,
    test = True,
    attrs = dict(
        _TRANSITION_ALLOWLIST,
        test = attr.label(
            mandatory = True,
            executable = True,
            cfg = "target",
            doc = "The plain cc_test that drives `binary` as a subprocess.",
        ),
        binary = attr.label(
            mandatory = True,
            executable = True,
            cfg = _asan_ubsan_transition,
            doc = "The binary to rebuild under ASan+UBSan for the run.",
        ),
    ),
    doc = "Runs a plain cc_test against a binary rebuilt with -fsanitize=address,undefined.",
)

# A sanitized run gets the next longer timeout than the plain one.
_SIZE_TIMEOUT = {"small": "short", "medium": "moderate", "large": "long", "enormous": "eternal"}
_LONGER_TIMEOUT = {"short": "moderate", "moderate": "long", "long": "eternal", "eternal": "eternal"}

# A test's own sources compile at -O0 unless it asks for `optimized`: they
# are gtest/gmock-heavy and run little, and -O0 compiles them in about half
# the time of -O2 (tests/reliable/endpoint_test.cc: 22 s -> 10 s), which is
# most of a cold `./bazelw test //...`. Libraries under test keep .bazelrc's
# -O2 (and the twins' -O1): only the test's translation units change.
# Scenario tests whose drivers (the simulation loop, data generation) live
# in the test file set optimized = True.
_TEST_COPTS = ["-O0"]

# In the twins, a test's own sources are built with ASan but without UBSan
# (-fno-sanitize=undefined after the transition's -fsanitize=address,undefined):
# every library, and the udpmsg binary a CLI test starts, keeps both. UBSan's
# checks on gtest-heavy test code are the costliest part of the second build
# (tests/reliable/endpoint_test.cc at -O0: 16.0 s with both, 11.8 s with ASan
# alone, 8.0 s plain) and look only at the tests' own arithmetic; ASan still
# catches a test reading memory a library freed. //tests:sanitizer_canary_test
# checks both halves.
_TWIN_TEST_COPTS = select({
    "//tests:asan_ubsan_twin": ["-fno-sanitize=undefined"],
    "//conditions:default": [],
})

def udpmsg_cc_test(name, size = "small", timeout = None, shard_count = None, args = None, tags = [], optimized = False, copts = [], linkopts = [], sanitized_binary = None, **kwargs):
    """cc_test `name` and its ASan+UBSan twin `name + "_asan_ubsan"`.

    `optimized`: compile the test's own sources like the libraries (-O2)
    instead of -O0, for tests whose hot loops are in the test file.
    `sanitized_binary`: for a test that only drives this binary (also in its
    `data`) as a subprocess: the twin runs the plain test against the binary
    rebuilt under ASan+UBSan.
    """
    native.cc_test(
        name = name,
        copts = (copts if optimized else _TEST_COPTS + copts) + _TWIN_TEST_COPTS,
        linkopts = linkopts + TWIN_EXECUTABLE_LINKOPTS,
        size = size,
        timeout = timeout,
        shard_count = shard_count,
        args = args,
        tags = tags,
        **kwargs
    )
    twin_kwargs = {"test": ":" + name}
    twin_rule = asan_ubsan_test
    if sanitized_binary:
        twin_kwargs["binary"] = sanitized_binary
        twin_rule = asan_ubsan_driver_test
    twin_rule(
        name = name + "_asan_ubsan",
        size = size,
        timeout = _LONGER_TIMEOUT[timeout or _SIZE_TIMEOUT[size]],
        shard_count = shard_count,
        args = args,
        tags = tags + ["asan", "ubsan"],
        testonly = True,
        **twin_kwargs
    )
