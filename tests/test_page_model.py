"""Model page: the layer table."""

from __future__ import annotations

from featviz_core import list_layers
from tests.conftest import no_exception


def test_model_table_lists_every_layer(make_app, imagenet_home) -> None:
    at = make_app(imagenet=imagenet_home, page="pages/model.py")
    no_exception(at)
    assert at.title[0].value == "Model"
    table = at.dataframe[0].value
    model = at.session_state["_selection"].model
    assert list(table["Layer"]) == [i.name for i in list_layers(model)]
    row = table[table["Layer"] == "layer1.0.relu#2"].iloc[0]
    assert row["Runs"] == 2 and row["Output"] == "64×56×56" and bool(row["Feature maps"])
    assert table[table["Layer"] == "fc"].iloc[0]["Parameters"] == 512 * 1000 + 1000
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "11.69 M" and metrics["Input"] == "3×224×224"


def test_search_and_filters(make_app) -> None:
    at = make_app(page="pages/model.py")
    at.text_input(key="model_search").input("conv").run()
    no_exception(at)
    table = at.dataframe[0].value
    assert len(table) > 0 and all("conv" in n.lower() or "conv" in k.lower()
                                  for n, k in zip(table["Layer"], table["Kind"], strict=True))
