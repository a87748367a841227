"""The benchmark's CPU accounting (bench/stack.py) against a real JVM: the JIT compiler threads'
share is found per thread and is part of, never more than, the process's CPU."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.stack import CpuSampler

SPIN = """
public class Spin {
  public static void main(String[] a) {
    long end = System.nanoTime() + Long.parseLong(a[0]) * 1_000_000L;
    java.util.HashMap<Integer, String> m = new java.util.HashMap<>();
    for (int i = 0; System.nanoTime() < end; i++) { m.put(i % 10_000, Integer.toString(i)); }
    System.out.println(m.size());
  }
}
"""


def test_jit_threads_are_a_part_of_a_jvms_cpu(tmp_path: Path) -> None:
    src = tmp_path / "Spin.java"
    src.write_text(SPIN)
    # the source launcher compiles Spin.java inside the JVM, then the loop gets hot: both are JIT work
    jvm = subprocess.Popen(["java", str(src), "2000"], stdout=subprocess.DEVNULL)
    with CpuSampler({"taskmanager": [jvm.pid], "gone": []}, period_s=0.1, jit=("taskmanager", "gone")) as cpu:
        jvm.wait(timeout=60)
        time.sleep(0.2)
    assert cpu.components == ["taskmanager", "taskmanager_jit"]  # a component without pids is dropped
    used = cpu.between(cpu.samples[0][0], cpu.samples[-1][0])
    assert 0.0 < used["taskmanager_jit"] < used["taskmanager"]
    assert used["taskmanager"] > 1.0  # ~2 s of a busy loop, measured after the JVM exited
