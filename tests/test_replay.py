"""Replay over three tasks: every earlier task's memory reaches every later task, and survives a resume.

A two-task test cannot tell "every earlier task's memory" from "the last earlier task's memory";
at the third task both earlier memories must be there, M samples each.
"""

from __future__ import annotations

from coin.data.sample import Sample
from coin.methods import StageContext, build_method
from coin.methods.base import sample_indices

TASKS = ["taskA", "taskB", "taskC"]


def _data(n: int = 10) -> dict[str, list[Sample]]:
    return {t: [Sample(f"{t}-{k}", t, None, "Question?", "answer") for k in range(n)] for t in TASKS}


def _ctx(data, stage: int, seed: int = 0) -> StageContext:
    return StageContext(vlm=None, task=TASKS[stage], stage=stage, tasks=TASKS,
                        train_data={t: data[t] for t in TASKS[: stage + 1]}, seed=seed)


def test_the_third_task_trains_on_both_earlier_memories():
    data = _data()
    replay = build_method("replay", {"samples": 4})
    for stage in range(2):
        replay.after_task(_ctx(data, stage))
    mixed = replay.train_data(_ctx(data, 2), data["taskC"])
    assert mixed[:10] == data["taskC"]
    extra = mixed[10:]
    for task in ("taskA", "taskB"):
        mine = [s for s in extra if s.task == task]
        assert [s.id for s in mine] == [f"{task}-{i}" for i in sample_indices(10, 4, 0, "replay", task)]
    assert len(extra) == 8


def test_a_resumed_replay_holds_every_earlier_memory():
    data = _data()
    replay = build_method("replay", {"samples": 3})
    for stage in range(2):
        replay.after_task(_ctx(data, stage))
    resumed = build_method("replay", {"samples": 3})
    resumed.load_state_dict(replay.state_dict())
    assert [s.id for s in resumed.replayed(_ctx(data, 2))] == [s.id for s in replay.replayed(_ctx(data, 2))]
    assert {s.task for s in resumed.replayed(_ctx(data, 2))} == {"taskA", "taskB"}
