"""Markdown rendering rules: math delimiters that leave prices alone."""

from __future__ import annotations

from forum.rendering import render_markdown


def test_display_math_inside_a_paragraph_is_one_formula() -> None:
    html = render_markdown("The AMS is $$x^2$$ with $b_r = 10$").html
    assert html == (
        '<p>The AMS is <span class="math block">x^2</span> with '
        '<span class="math inline">b_r = 10</span></p>\n'
    )


def test_prices_are_not_math() -> None:
    assert render_markdown("cost $5 and $10").html == "<p>cost $5 and $10</p>\n"
    assert render_markdown("between $ 3 and 4 $ a day").html == (
        "<p>between $ 3 and 4 $ a day</p>\n"
    )
    # A closing dollar followed by a digit is not a closing dollar.
    assert "math" not in render_markdown("from $a to 5$5").html


def test_ordinary_inline_and_block_math_still_work() -> None:
    assert render_markdown("Inline $x^2$ here.").html == (
        '<p>Inline <span class="math inline">x^2</span> here.</p>\n'
    )
    assert '<div class="math block">' in render_markdown("$$\n\\int x\n$$").html
    # The TeX is text: markup in a formula is escaped, not interpreted.
    assert "<b>" not in render_markdown("$$<b>x</b>$$ end").html
