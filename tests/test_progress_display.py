"""The progress display of a long analysis: what ingest reports, and the bar shown only on a terminal."""

from __future__ import annotations

import io

from forensics import progress
from forensics.analyze import analyze
from tensorboard_files import scalar_event, write_frames


class Recorder:
    """A listener that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def run_started(self, total_bytes, files):
        self.calls.append(("run", total_bytes, files))

    def file_started(self, display_path, size_bytes):
        self.calls.append(("file", display_path, size_bytes))

    def file_advanced(self, done_bytes):
        self.calls.append(("advanced", done_bytes))

    def stage(self, name):
        self.calls.append(("stage", name))

    def close(self):
        self.calls.append(("closed",))


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def small_run(tmp_path):
    run = tmp_path / "run"
    (run / "tb").mkdir(parents=True)
    payloads = [scalar_event("train/loss", step, 1.0 / (step + 1), 1.7e9 + step) for step in range(40_000)]
    write_frames(run / "tb" / "events.out.tfevents.1700000000.host.1.0", payloads)
    (run / "train.log").write_text("".join(f"step={s} loss={1.0 / (s + 1)} lr=0.001\n" for s in range(500)))
    return run


def test_ingest_reports_each_file_and_how_far_then_the_stages(tmp_path, monkeypatch):
    import forensics.ingest.tfrecord as tfrecord

    monkeypatch.setattr(tfrecord, "CHUNK_BYTES", 64 << 10)  # several chunks: several positions
    run = small_run(tmp_path)
    event_file = run / "tb" / "events.out.tfevents.1700000000.host.1.0"
    sizes = {"tb/events.out.tfevents.1700000000.host.1.0": event_file.stat().st_size,
             "train.log": (run / "train.log").stat().st_size}
    recorder = Recorder()
    with progress.listening(recorder):
        analyze(run)
    calls = recorder.calls
    assert calls[0] == ("run", sum(sizes.values()), 2)
    assert sorted(c[1:] for c in calls if c[0] == "file") == sorted(sizes.items())
    start = calls.index(("file", "tb/events.out.tfevents.1700000000.host.1.0", sizes["tb/events.out.tfevents.1700000000.host.1.0"]))
    positions = []
    for call in calls[start + 1:]:
        if call[0] != "advanced":
            break
        positions.append(call[1])
    assert len(positions) > 5 and positions == sorted(positions) and positions[-1] == event_file.stat().st_size
    stages = [c[1] for c in calls if c[0] == "stage"]
    assert stages[0] == "building the run model" and stages[-1] == "building the report"
    assert calls[-1] == ("closed",)


def test_nobody_listening_costs_nothing_and_breaks_nothing(tmp_path):
    run = small_run(tmp_path)
    assert progress._listener.get() is None
    report = analyze(run)  # no listener: every report call is a no-op
    assert report.run_name == "run"


def test_the_bar_shows_the_file_and_how_far_on_a_terminal(tmp_path):
    terminal = FakeTerminal()
    with progress.listening(progress.TerminalProgress(terminal, delay_seconds=0, redraw_seconds=0)):
        analyze(small_run(tmp_path))
    shown = terminal.getvalue()
    assert "reading 1/2 tb/events.out.tfevents.1700000000.host.1.0" in shown
    assert "reading 2/2 train.log" in shown and "100%" in shown and "running the checks" in shown


def test_no_bar_when_not_a_terminal_or_quiet(tmp_path):
    not_a_terminal = io.StringIO()
    with progress.terminal_progress(True, not_a_terminal):
        assert progress._listener.get() is None
    with progress.terminal_progress(False, FakeTerminal()):
        assert progress._listener.get() is None
    with progress.terminal_progress(True, FakeTerminal()):
        assert isinstance(progress._listener.get(), progress.TerminalProgress)
    assert progress._listener.get() is None and not_a_terminal.getvalue() == ""


def test_the_bar_stays_hidden_for_a_quick_analysis(tmp_path):
    terminal = FakeTerminal()
    with progress.terminal_progress(True, terminal):  # the default delay of two seconds
        analyze(small_run(tmp_path))
    assert terminal.getvalue() == ""
