"""The registry: how a name in a config becomes an object, and how users add their own parts."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.registry import NETWORKS, Registry, import_plugins, load_builtin_parts


class Widget:
    def __init__(self, size: int = 3, colour: str = "red") -> None:
        self.size, self.colour = size, colour


def make_gadget(data_spec, width: int = 4):
    return ("gadget", data_spec, width)


@pytest.fixture
def widgets() -> Registry:
    registry = Registry("widget")
    registry.register("widget")(Widget)
    registry.register("gadget")(make_gadget)
    registry.register("sprocket")(lambda: "sprocket")
    return registry


# ---------------------------------------------------------------- register / get / build


def test_register_get_and_build(widgets: Registry) -> None:
    """A registered constructor is found by name and built with the user's options."""
    assert widgets.get("widget") is Widget
    assert "widget" in widgets and "nothing" not in widgets
    assert widgets.names() == ["gadget", "sprocket", "widget"]
    assert list(widgets) == widgets.names()
    built = widgets.build("widget", {"size": 7})
    assert isinstance(built, Widget)
    assert (built.size, built.colour) == (7, "red")
    assert widgets.build("widget").size == 3  # no options: the constructor's defaults


def test_register_returns_constructor_unchanged() -> None:
    """The decorator must hand back the class itself so the module can still use it."""
    registry = Registry("thing")

    @registry.register("thing")
    class Thing:
        pass

    assert isinstance(Thing(), Thing)
    assert registry.get("thing") is Thing


def test_unknown_name_lists_choices_and_suggests_closest(widgets: Registry) -> None:
    """A typo gets a one-line UserError naming all choices and the closest one."""
    with pytest.raises(UserError) as info:
        widgets.get("widgte")
    message = str(info.value)
    assert "'widgte'" in message
    for name in ("gadget", "sprocket", "widget"):
        assert name in message
    assert "did you mean 'widget'" in message


def test_unknown_name_without_close_match_has_no_suggestion(widgets: Registry) -> None:
    """No spurious 'did you mean' when nothing is similar; the choices are still listed."""
    with pytest.raises(UserError) as info:
        widgets.build("zzzzzzzz")
    assert "did you mean" not in str(info.value)
    assert "gadget, sprocket, widget" in str(info.value)


def test_empty_registry_says_none_registered() -> None:
    """An empty registry still gives a readable message, not an empty list."""
    with pytest.raises(UserError, match="none registered"):
        Registry("thing").get("anything")


def test_unknown_option_names_accepted_ones(widgets: Registry) -> None:
    """A misspelt option is rejected with the list of options the part does take."""
    with pytest.raises(UserError) as info:
        widgets.build("widget", {"sise": 4})
    message = str(info.value)
    assert "sise" in message
    assert "size" in message and "colour" in message


def test_a_null_option_left_by_another_part_is_its_default_and_dropped(widgets: Registry) -> None:
    """Switching a preset's name leaves the old part's options behind; a null one (Hydra's '~key' cannot delete
    it) means "the default" and is dropped, a set one is still named, as is a null option no part takes."""
    assert widgets.build("gadget", {"size": None}, config_key="model.generator", data_spec="s") == ("gadget", "s", 4)
    with pytest.raises(UserError, match=r"model.generator.size is an option of the widget widget, not of gadget; "
                                        r"drop it with '~model.generator.size'"):
        widgets.build("gadget", {"size": 6}, config_key="model.generator", data_spec="s")
    with pytest.raises(UserError, match="has no option 'sise'"):
        widgets.build("widget", {"sise": None})


def test_unknown_option_message_leaves_out_context_params(widgets: Registry) -> None:
    """Context parameters are filled by gantrain, so they are not offered as options."""
    with pytest.raises(UserError) as info:
        widgets.build("gadget", {"height": 2}, data_spec="spec")
    options_part = str(info.value).split("options are:")[1]
    assert "width" in options_part
    assert "data_spec" not in options_part


def test_option_may_not_override_context(widgets: Registry) -> None:
    """A config cannot smuggle in a value gantrain supplies itself (e.g. the data spec)."""
    with pytest.raises(UserError, match="data_spec"):
        widgets.build("gadget", {"data_spec": "mine"}, data_spec="real")


def test_no_options_message(widgets: Registry) -> None:
    """A part without options says so."""
    with pytest.raises(UserError, match=r"\(none\)"):
        widgets.build("sprocket", {"size": 1})


def test_context_passed_only_when_asked(widgets: Registry) -> None:
    """Context items the constructor does not name are dropped instead of raising TypeError."""
    context = {"data_spec": "spec", "latent_dim": 8, "device": torch.device("cpu")}
    assert widgets.build("gadget", {"width": 9}, **context) == ("gadget", "spec", 9)
    assert widgets.build("widget", {"size": 2}, **context).size == 2
    assert widgets.build("sprocket", None, **context) == "sprocket"


def test_var_keyword_constructor_gets_everything() -> None:
    """A ``**kwargs`` constructor accepts any option and receives all the context."""
    registry = Registry("thing")
    registry.register("open")(lambda **kwargs: kwargs)
    assert registry.build("open", {"anything": 1}, latent_dim=4) == {"anything": 1, "latent_dim": 4}


def test_registering_a_name_twice_with_another_constructor_raises() -> None:
    """Two parts cannot silently shadow each other."""
    registry = Registry("thing")
    registry.register("a")(Widget)
    with pytest.raises(ValueError, match="'a'"):
        registry.register("a")(make_gadget)
    assert registry.get("a") is Widget


def test_registering_the_same_constructor_again_is_harmless() -> None:
    """Re-importing a module (and load_builtin_parts) must be idempotent."""
    registry = Registry("thing")
    registry.register("a")(Widget)
    registry.register("a")(Widget)
    assert registry.names() == ["a"]
    load_builtin_parts()
    load_builtin_parts()
    assert "dcgan_generator" in NETWORKS


# ---------------------------------------------------------------- user plugins


PLUGIN_SOURCE = textwrap.dedent('''
    """A user's own generator, registered from outside gantrain."""
    import torch
    from torch import nn

    from gantrain.registry import NETWORKS


    @NETWORKS.register("{name}")
    class PluginGenerator(nn.Module):
        def __init__(self, data_spec, latent_dim, hidden=4):
            super().__init__()
            self.shape = tuple(data_spec.shape)
            self.hidden = hidden
            self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Linear(hidden, 2))

        def forward(self, z):
            return self.net(z).view(z.shape[0], *self.shape)
''')


@pytest.fixture
def isolated_networks(monkeypatch: pytest.MonkeyPatch):
    """Plugins register into a copy of NETWORKS, so no test leaves a part behind."""
    monkeypatch.setattr(NETWORKS, "_entries", dict(NETWORKS._entries))
    added: list[str] = []
    yield added
    for module in added:
        sys.modules.pop(module, None)


def test_plugin_module_registers_a_buildable_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      isolated_networks: list[str]) -> None:
    """plugins=[my_module] makes the user's network buildable by name, like a built-in one."""
    module, name = "gantrain_test_user_plugin", "user_plugin_generator"
    (tmp_path / f"{module}.py").write_text(PLUGIN_SOURCE.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    isolated_networks.append(module)
    assert name not in NETWORKS

    import_plugins([module])

    assert name in NETWORKS
    net = NETWORKS.build(name, {"hidden": 6}, data_spec=DataSpec(shape=(2,), bounded=False), latent_dim=3,
                         device=torch.device("cpu"))
    assert isinstance(net, nn.Module) and net.hidden == 6
    assert net(torch.zeros(5, 3)).shape == (5, 2)


def test_plugin_in_a_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_networks: list[str]) -> None:
    """Dotted module paths (my_pkg.nets) work too."""
    package = tmp_path / "gantrain_test_user_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(PLUGIN_SOURCE.format(name="user_pkg_generator"))
    monkeypatch.syspath_prepend(str(tmp_path))
    isolated_networks.extend(["gantrain_test_user_pkg.nets", "gantrain_test_user_pkg"])

    import_plugins(["gantrain_test_user_pkg.nets"])
    assert "user_pkg_generator" in NETWORKS


def test_import_plugins_missing_module_is_user_error() -> None:
    """A mistyped plugin path is the user's mistake: one line naming the module."""
    with pytest.raises(UserError, match="no_such_gantrain_plugin_xyz"):
        import_plugins(["no_such_gantrain_plugin_xyz"])


def test_import_plugins_with_missing_dependency_is_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              isolated_networks: list[str]) -> None:
    """A plugin that imports something not installed also gets a UserError naming the plugin."""
    (tmp_path / "gantrain_test_broken_plugin.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    isolated_networks.append("gantrain_test_broken_plugin")
    with pytest.raises(UserError) as info:
        import_plugins(["gantrain_test_broken_plugin"])
    assert "gantrain_test_broken_plugin" in str(info.value)
    assert "no_such_dependency_xyz" in str(info.value)


def test_import_plugins_nothing_to_do() -> None:
    """The default ``plugins: []`` (or null) imports nothing."""
    import_plugins([])
    import_plugins(None)
