"""The benchmark's finished-cell check walks the stages in the pipeline's order."""
from gfkd.config import STAGES


def test_finished_metrics_walks_the_pipelines_stages_in_order():
    from flows.pipeline import STAGE_TASKS

    assert tuple(STAGE_TASKS) == STAGES  # tasks.benchmark.finished_metrics chains upstream digests in STAGES order


def test_a_folder_without_manifests_is_not_finished(tmp_path):
    from gfkd.config import resolve_config
    from tasks.benchmark import finished_metrics

    assert finished_metrics(resolve_config(None, []), tmp_path) is None
