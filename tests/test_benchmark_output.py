"""The benchmark_model output parser on every layout it claims to read.

Fixtures marked REAL are console output pasted in public GitHub issues and
docs, quoted verbatim (source named above each; "[...]" marks where the paste
was cut). Fixtures marked SOURCE are written from the printing code itself at
the commits cited in itpl/deploy/devices/benchmark_output.py, for the cases no paste
shows (percentiles, the op profile ahead of the summary, LiteRT's full run).
"""

import pytest

from itpl.deploy.devices.benchmark_output import parse_benchmark_output, parse_ops

# REAL: tensorflow/tensorflow#73862 (2024, TF tools built from source, INFO: prefix).
TFLITE_INFO = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [mobilenet_v1_1.0_224.tflite]
INFO: Signature to run: []
INFO: Loaded model mobilenet_v1_1.0_224.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 16.9008
INFO: Initialized session in 12.75ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=37 first=14744 curr=15520 min=13164 max=18295 avg=13764.3 std=967

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=74 first=14850 curr=13315 min=13105 max=15765 avg=13520.2 std=470

INFO: Inference timings in us: Init: 12750, First inference: 14744, Warmup (avg): 13764.3, Inference (avg): 13520.2
"""

# REAL: google-research/google-research#802 (2022, on a phone, no prefix).
TFLITE_PLAIN = """\
STARTING!
Log parameter values verbosely: [0]
Min num runs: [1000]
Num threads: [1]
Min warmup runs: [1]
Graph: [/data/local/tmp/model.tflite]
#threads used for CPU inference: [1]
Loaded model /data/local/tmp/model.tflite
The input model file size (MB): 1.41812
Initialized session in 17.851ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=478 first=2104 curr=1017 min=1012 max=2104 avg=1041.15 std=63

Running benchmark for at least 1000 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=1000 first=1040 curr=1018 min=1012 max=1190 avg=1039.66 std=22

Inference timings in us: Init: 17851, First inference: 2104, Warmup (avg): 1041.15, Inference (avg): 1039.66
"""

# REAL: tensorflow/tensorflow#62775 (TF 2.15, --enable_op_profiling=true), its
# summary and the start of its regular-runs op profile ("^[[A" is in the paste).
OP_PROFILE_AFTER = """\
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
^[[AINFO: count=132 first=3678 curr=3790 min=3270 max=5473 avg=3751.66 std=334

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=261 first=3937 curr=3959 min=3190 max=6333 avg=3790.92 std=358

INFO: Inference timings in us: Init: 630, First inference: 3678, Warmup (avg): 3751.66, Inference (avg): 3790.92
[...]
Subgraph (index: 2) Timings (microseconds): count=1 curr=32
Memory (bytes): count=0
1 nodes observed



INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
Primary graph profile:
============================== Run Order ==============================
                                     [node type]          [first]        [avg ms]            [%]          [cdf%]          [mem KB]      [times called]  [Name]
                                  RANDOM_UNIFORM            0.003           0.003         0.067%          0.067%             0.000              1       [simple_model/random_uniform/RandomUniform]:0
                                       TRANSPOSE            0.027           0.031         0.628%          0.695%             0.000              1       [transpose]:1

"""

# SOURCE: the same run with its op profile printed ahead of the summary (the
# layout issue 18 reports): the profile's own statistics lines, ending with
# "Memory (bytes): count=0", come last before the summary and are no phase.
OP_PROFILE_BEFORE = """\
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=132 first=3678 curr=3790 min=3270 max=5473 avg=3751.66 std=334

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=261 first=3937 curr=3959 min=3190 max=6333 avg=3790.92 std=358

INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t                             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t                                 CONV_2D\t    2.110\t    2.051\t 54.104%\t 54.104%\t     0.000\t        1\t[conv1]:0
\t Convolution (NHWC, F32) IGEMM\t    1.700\t    1.739\t 45.896%\t100.000%\t     0.000\t        1\t[conv2]:1

Timings (microseconds): count=261 first=3937 curr=3959 min=3190 max=6333 avg=3790.92 std=358
Memory (bytes): count=0
2 nodes observed

INFO: Inference timings in us: Init: 630, First inference: 3678, Warmup (avg): 3751.66, Inference (avg): 3790.92
"""

# REAL: mlcommons/mobile_app_open#1134 (2026, LiteRT 2.1.5 //litert/tools:benchmark_model).
LITERT_REAL = """\
...
========== BENCHMARK RESULTS ==========
INFO: [benchmark_litert_model.h:92] Signature name:       prefill_1024
INFO: [benchmark_litert_model.h:94] Model initialization: 23744.73 ms
INFO: [benchmark_litert_model.h:96] Warmup (first):       7441.04 ms
INFO: [benchmark_litert_model.h:98] Warmup (avg):         7441.04 ms (1 runs)
INFO: [benchmark_litert_model.h:100] Inference (avg):      7430.20 ms (10 runs)
INFO: [benchmark_litert_model.h:104] Inference (min):      7416.40 ms
INFO: [benchmark_litert_model.h:106] Inference (max):      7448.86 ms
INFO: [benchmark_litert_model.h:108] Inference (std):      9.92
INFO: [benchmark_litert_model.h:115] Throughput:           27.46 MB/s
INFO: [benchmark_litert_model.h:124] 
Memory Usage:
INFO: [benchmark_litert_model.h:126] Init footprint:       6391.74 MB
INFO: [benchmark_litert_model.h:128] Overall footprint:    6391.74 MB
INFO: [benchmark_litert_model.h:135] Peak memory usage not available. (peak_mem_mb <= 0)
"""

# SOURCE: LiteRT's tool end to end (benchmark_model.cc's phase lines with
# StatWithPercentiles' percentiles, the results block, --use_profiler's table
# from litert/runtime/profiler_summarizer.cc), on stderr as one stream.
LITERT_FULL = """\
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=12 first=90210 curr=85990 min=85120 max=90210 avg=86402.5 std=1410 p5=85120 median=86010 p95=90210

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=85400 curr=85210 min=84870 max=86990 avg=85231.4 std=402 p5=84900 median=85190 p95=86010

INFO: [benchmark_litert_model.h:89] 
========== BENCHMARK RESULTS ==========
INFO: [benchmark_litert_model.h:94] Model initialization: 31.52 ms
INFO: [benchmark_litert_model.h:95] Warmup (first):       90.21 ms
INFO: [benchmark_litert_model.h:97] Warmup (avg):         86.40 ms (12 runs)
INFO: [benchmark_litert_model.h:99] Inference (avg):      85.23 ms (50 runs)
INFO: [benchmark_litert_model.h:103] Inference (min):      84.87 ms
INFO: [benchmark_litert_model.h:105] Inference (max):      86.99 ms
INFO: [benchmark_litert_model.h:107] Inference (std):      0.40
INFO: [benchmark_litert_model.h:115] Throughput:           198.10 MB/s
INFO: [benchmark_litert_model.h:138] ======================================

INFO: [benchmark_litert_model.h:192] 
============================================= Run Order ==============================================
                                                 [node type]    [start]    [first]   [avg ms]        [%]     [cdf%]   [mem KB] [times called]   [Name]
                                                     CONV_2D      0.000      3.120      3.010    60.000%    60.000%      0.000             50   [conv1]:0
                                           DEPTHWISE_CONV_2D      3.120      2.050      2.007    40.000%   100.000%      0.000             50   [dw1]:1

"""

# REAL: the oldest layout, from a TF 1.x-era tutorial's log (stored doc page).
NO_STATS = """\
    Running benchmark for 1 iterations
    count=1 curr=146161

    Running benchmark for 50 iterations
    count=50 first=137789 curr=137254 min=137079 max=143416 avg=137722 std=896

    Average inference timings in us: Warmup: 146161, Init: 4452, no stats: 137722
"""

# REAL: TFLite's Android benchmark app, its README's logcat line.
ANDROID_APP = "... tflite  : Average inference timings in us: Warmup: 91471, Init: 4108, Inference: 80660.1\n"


@pytest.mark.parametrize("text,avg,count,lo,hi,layout", [
    (TFLITE_INFO, 13520.2, 74, 13105, 15765, "tflite"),
    (TFLITE_PLAIN, 1039.66, 1000, 1012, 1190, "tflite"),
    (OP_PROFILE_AFTER, 3790.92, 261, 3190, 6333, "tflite"),
    (OP_PROFILE_BEFORE, 3790.92, 261, 3190, 6333, "tflite"),
    (NO_STATS, 137722, 50, 137079, 143416, "tflite-average"),
    (ANDROID_APP, 80660.1, None, None, None, "tflite-average"),
    (LITERT_REAL, 7430200, 10, 7416400, 7448860, "litert"),
])
def test_layouts_without_a_median_report_the_average(text, avg, count, lo, hi, layout):
    r = parse_benchmark_output(text)
    assert r.layout == layout
    assert r.avg_us == pytest.approx(avg) and r.median_us == r.avg_us
    assert r.median_kind == "average"  # these builds print no median
    assert r.count == count  # the timed phase, not the warm-up or the op profile
    assert r.min_us == (None if lo is None else pytest.approx(lo))
    assert r.max_us == (None if hi is None else pytest.approx(hi))


def test_summary_fields():
    r = parse_benchmark_output(TFLITE_INFO)
    assert (r.init_us, r.warmup_avg_us, r.std_us) == (12750, 13764.3, 470)
    r = parse_benchmark_output(LITERT_REAL)
    assert r.init_us == pytest.approx(23744730) and r.warmup_avg_us == pytest.approx(7441040)
    assert r.std_us == pytest.approx(9920)
    r = parse_benchmark_output(ANDROID_APP.replace("80660.1", "80660.1Overall { max rss=0 }"))
    assert r.avg_us == 80660.1  # the app runs its memory text straight on


def test_a_median_where_the_tool_prints_one():
    with_median = TFLITE_INFO.replace("std=470", "std=470 p5=13110 median=13490 p95=14620")
    r = parse_benchmark_output(with_median)
    assert (r.median_us, r.median_kind, r.avg_us) == (13490, "median", 13520.2)
    r = parse_benchmark_output(LITERT_FULL)
    assert r.layout == "litert" and (r.median_us, r.median_kind) == (85190, "median")
    assert r.avg_us == 85231.4  # the phase line's microseconds, not the block's rounded ms
    assert (r.count, r.min_us, r.max_us) == (50, 84870, 86990)


def test_runs_that_all_took_the_same_time():
    text = TFLITE_PLAIN.replace("count=1000 first=1040 curr=1018 min=1012 max=1190 avg=1039.66 std=22",
                                "count=1000 curr=1018(all same) p5=1018 median=1018 p95=1018")
    r = parse_benchmark_output(text)
    assert (r.count, r.min_us, r.max_us, r.median_us, r.median_kind) == \
        (1000, 1018, 1018, 1018, "median")


def test_a_slow_model_in_exponent_notation_from_logcat():
    logcat = """\
11-21 10:00:01.123  4242  4242 I tflite  : Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
11-21 10:00:02.456  4242  4242 I tflite  : count=61 first=1.2e+06 curr=1234567 min=1200000 max=1300000 avg=1.23457e+06 std=2000
11-21 10:00:02.457  4242  4242 I tflite  : Inference timings in us: Init: 51234, First inference: 1300000, Warmup (avg): 1.25e+06, Inference (avg): 1.23457e+06
"""
    r = parse_benchmark_output(logcat)
    assert (r.avg_us, r.count, r.min_us, r.max_us) == (1.23457e6, 61, 1.2e6, 1.3e6)


def test_op_profiles():
    ops = parse_ops(OP_PROFILE_AFTER)
    assert [(o.node_type, o.name, o.avg_ms, o.percent) for o in ops] == [
        ("RANDOM_UNIFORM", "[simple_model/random_uniform/RandomUniform]:0", 0.003, 0.067),
        ("TRANSPOSE", "[transpose]:1", 0.031, 0.628)]
    ops = parse_benchmark_output(OP_PROFILE_BEFORE).ops
    assert [(o.node_type, o.first_ms, o.avg_ms) for o in ops] == [
        ("CONV_2D", 2.110, 2.051), ("Convolution (NHWC, F32) IGEMM", 1.700, 1.739)]
    ops = parse_benchmark_output(LITERT_FULL).ops
    assert [(o.node_type, o.name, o.avg_ms, o.times_called) for o in ops] == [
        ("CONV_2D", "[conv1]:0", 3.010, 50), ("DEPTHWISE_CONV_2D", "[dw1]:1", 2.007, 50)]
    assert parse_benchmark_output(TFLITE_INFO).ops == []


def test_the_init_profile_is_not_the_runs_profile():
    init = ("Profiling Info for Benchmark Initialization:\n"
            "============================== Run Order ==============================\n"
            "\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t"
            "  [mem KB]\t[times called]\t[Name]\n"
            "\t         AllocateTensors\t            0.000\t    0.071\t    0.071\t100.000%\t100.000%\t"
            "     0.000\t        1\tAllocateTensors/0\n\n")
    ops = parse_ops(init + OP_PROFILE_AFTER)
    assert [o.node_type for o in ops] == ["RANDOM_UNIFORM", "TRANSPOSE"]


def test_failures_name_the_tools_last_words():
    with pytest.raises(ValueError, match="File /x.tflite does not exist"):
        parse_benchmark_output("INFO: STARTING!\nERROR: File /x.tflite does not exist.\n")
    with pytest.raises(ValueError, match="no output"):
        parse_benchmark_output("")
    no_runs = LITERT_REAL.replace("7430.20 ms (10 runs)", "0.00 ms (0 runs)")
    with pytest.raises(ValueError, match="timed no inference"):
        parse_benchmark_output(no_runs.replace(" (std):      9.92", " (std): 0"))
    with pytest.raises(ValueError, match="no timing summary"):
        parse_benchmark_output(LITERT_REAL.split("Inference (avg)")[0])  # cut before the average
