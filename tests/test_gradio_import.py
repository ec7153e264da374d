"""textclf.gradio_import: gradio imported without rewriting its type stubs, and still working."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from textclf.gradio_import import without_stub_regeneration

# Run in a fresh interpreter: the test process may already have imported gradio.
CHECK = textwrap.dedent("""
    import sys
    from textclf.gradio_import import without_stub_regeneration
    finders = list(sys.meta_path)
    with without_stub_regeneration():
        import gradio as gr
    import gradio.component_meta as meta
    print(meta.create_or_modify_pyi.__name__)
    print(sys.meta_path == finders)

    class Shout(gr.Textbox):  # a component defined after the import goes through the same metaclass
        pass

    with gr.Blocks() as demo:
        box = Shout(value="hi")
        out = gr.Textbox()
        box.submit(lambda s: s.upper(), box, out)
    print(len(demo.fns))
""")


def test_gradio_imports_without_its_stub_regeneration_and_still_builds_blocks() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["_no_stub", "True", "1"]


def test_without_the_block_gradio_keeps_its_own_function() -> None:
    code = "import gradio.component_meta as m; print(m.create_or_modify_pyi.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "create_or_modify_pyi"


def test_gradio_already_imported_is_left_alone() -> None:
    import gradio.component_meta as meta

    before = list(sys.meta_path), meta.create_or_modify_pyi
    with without_stub_regeneration():
        assert list(sys.meta_path) == before[0]
    assert meta.create_or_modify_pyi is before[1]
