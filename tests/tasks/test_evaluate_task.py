"""The evaluate task's Prefect artifact: the report with its figures as paths, since Prefect's UI cannot load them."""
from tasks.evaluate import artifact_markdown


def test_each_figure_becomes_its_path_and_the_rest_is_kept(tmp_path):
    report = "# Report\n\n| row | acc |\n|---|---|\n\n![confusion.png](confusion.png)\n![a b](sub/graphs.png)\ntext [link](x.md)\n"
    out = artifact_markdown(report, tmp_path)
    assert "![" not in out and out.startswith("# Report\n\n| row | acc |\n|---|---|\n")
    assert f"*Figure confusion.png: `{(tmp_path / 'confusion.png').resolve()}`" in out
    assert f"*Figure a b: `{(tmp_path / 'sub' / 'graphs.png').resolve()}`" in out
    assert "text [link](x.md)" in out  # plain links are not images


def test_a_whole_report_keeps_no_image_and_names_every_figure(tmp_path):
    from gfkd.report import Row, markdown_report

    report = markdown_report("MUTAG", {"device": "cpu"}, [Row("teacher", "teacher", [0.8])],
                             ["confusion.png", "degrees.png"])
    out = artifact_markdown(report, tmp_path)
    assert "![" not in out and out.count("*Figure ") == 2 and "| teacher | 0.800" in out
