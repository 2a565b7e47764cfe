"""The line per stage that `gfkd run` prints: status, the stage's seconds, its headline metrics."""
from flows.cli import HEADLINE, stage_line


def test_line_shows_the_headline_metrics_in_order_and_no_per_student_wall_time():
    rec = {"stage": "distill", "status": "ran", "wall_s": 89.26,
           "metrics": {"distill/time/wall_s": 15.95, "distill/test/acc_kd_real": 0.807, "distill/test/acc": 0.7544,
                       "distill/params/body": 3680.0}}
    assert stage_line(rec) == "  distill: ran      89.3s  distill/test/acc=0.7544, distill/test/acc_kd_real=0.807"


def test_line_of_a_stage_without_metrics_has_no_trailing_space():
    assert stage_line({"stage": "evaluate", "status": "cached", "wall_s": 0.04, "metrics": {}}) == \
        " evaluate: cached    0.0s"
    assert stage_line({"stage": "group", "status": "failed", "wall_s": 1.0}) == "    group: failed    1.0s"


def test_every_stage_has_a_headline_entry():
    from gfkd.config import STAGES

    assert set(HEADLINE) == set(STAGES)


def test_a_count_is_printed_whole():
    rec = {"stage": "generate", "status": "ran", "wall_s": 3.0,
           "metrics": {"generate/quality/num_graphs": 17262.0, "generate/quality/teacher_agreement": 0.88631}}
    assert stage_line(rec).endswith("generate/quality/num_graphs=17262, generate/quality/teacher_agreement=0.8863")
