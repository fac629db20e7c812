"""Where metrics sit: above jobs and limits (which never import them), below the edges."""

from ..test_layers import GRAPH, _layer


def test_only_the_edges_import_the_metrics():
    """jobs, limits and the engine know no metrics; only the service and the CLI use them."""
    users = {
        _layer(module)
        for module, targets in GRAPH.items()
        if _layer(module) != "metrics" and any(_layer(t) == "metrics" for t in targets)
    }
    assert users == {"service", "cli"}


def test_the_metrics_import_no_edge():
    """The metrics package imports neither the service (starlette) nor the CLI."""
    imported = {
        _layer(t)
        for module, targets in GRAPH.items()
        if _layer(module) == "metrics"
        for t in targets
    }
    assert "jobs" in imported  # the graph is read
    assert not imported & {"service", "cli", "mockapi"}
