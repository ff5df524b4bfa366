"""Edit formats: search/replace blocks and unified diffs parse from a model's reply and apply
with whitespace-tolerant matching; whatever does not apply is a problem naming the file,
the text looked for and the nearest match — never an exception, never a guess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipyard.model import Finding
from shipyard.repos import EDIT_FORMAT, AppliedEdits, apply_edits, parse_edits

CART = """\
class Cart:
    def __init__(self):
        self.items = []

    def total(self):
        return sum(item.price for item in self.items)

    def count(self):
        return len(self.items)
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "cart.py").write_text(CART)
    (root / "shop" / "tax.py").write_text("RATE = 0.2\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    return root


def apply(tree: Path, reply: str) -> AppliedEdits:
    parsed = parse_edits(reply)
    assert not parsed.problems, parsed.problems
    return apply_edits(tree, parsed.edits)


def test_search_replace_blocks_change_a_file_and_create_another(tree: Path) -> None:
    reply = """I will fix the total.

shop/cart.py
```python
<<<<<<< SEARCH
    def total(self):
        return sum(item.price for item in self.items)
=======
    def total(self):
        return sum(item.price * item.quantity for item in self.items)
>>>>>>> REPLACE
```

And the count, in the same file:

```python
<<<<<<< SEARCH
        return len(self.items)
=======
        return sum(item.quantity for item in self.items)
>>>>>>> REPLACE
```

`shop/discount.py`
```python
<<<<<<< SEARCH
=======
def apply(total, percent):
    return total * (100 - percent) / 100
>>>>>>> REPLACE
```
"""
    result = apply(tree, reply)
    assert result.ok and result.applied == 3
    assert result.changed == ("shop/cart.py", "shop/discount.py")
    cart = (tree / "shop" / "cart.py").read_text()
    assert "item.price * item.quantity" in cart and "sum(item.quantity" in cart
    assert (tree / "shop" / "discount.py").read_text().startswith("def apply(total, percent):\n")


def test_a_unified_diff_in_a_fence_modifies_creates_and_deletes(tree: Path) -> None:
    reply = """```diff
diff --git a/shop/cart.py b/shop/cart.py
--- a/shop/cart.py
+++ b/shop/cart.py
@@ -4,5 +4,5 @@ class Cart:

     def total(self):
-        return sum(item.price for item in self.items)
+        return round(sum(item.price for item in self.items), 2)

@@ -8,2 +8,3 @@ class Cart:
     def count(self):
+        \"\"\"How many items.\"\"\"
         return len(self.items)
--- /dev/null
+++ b/shop/coupon.py
@@ -0,0 +1,2 @@
+def valid(code):
+    return code.isalnum()
--- a/shop/tax.py
+++ /dev/null
@@ -1 +0,0 @@
-RATE = 0.2
```"""
    result = apply(tree, reply)
    assert result.ok and result.applied == 4, result.problems
    cart = (tree / "shop" / "cart.py").read_text()
    assert "round(sum(item.price for item in self.items), 2)" in cart
    assert '    def count(self):\n        """How many items."""\n        return len' in cart
    assert (tree / "shop" / "coupon.py").read_text() == (
        "def valid(code):\n    return code.isalnum()\n"
    )
    assert not (tree / "shop" / "tax.py").exists()
    assert result.changed == ("shop/cart.py", "shop/coupon.py", "shop/tax.py")


def test_a_bare_diff_without_prefixes_applies(tree: Path) -> None:
    reply = "Here:\n--- shop/tax.py\n+++ shop/tax.py\n@@ -1 +1 @@\n-RATE = 0.2\n+RATE = 0.25\n"
    assert apply(tree, reply).ok
    assert (tree / "shop" / "tax.py").read_text() == "RATE = 0.25\n"


def test_trailing_whitespace_in_the_file_is_tolerated(tree: Path) -> None:
    (tree / "shop" / "tax.py").write_text("RATE = 0.2   \nNAME = 'vat'\n")
    reply = "shop/tax.py\n<<<<<<< SEARCH\nRATE = 0.2\n=======\nRATE = 0.3\n>>>>>>> REPLACE\n"
    assert apply(tree, reply).ok
    assert (tree / "shop" / "tax.py").read_text() == "RATE = 0.3\nNAME = 'vat'\n"


def test_indentation_that_differs_consistently_is_tolerated_and_reindented(tree: Path) -> None:
    reply = """shop/cart.py
<<<<<<< SEARCH
def count(self):
    return len(self.items)
=======
def count(self):
    if not self.items:
        return 0
    return len(self.items)
>>>>>>> REPLACE
"""
    assert apply(tree, reply).ok
    assert (
        (tree / "shop" / "cart.py")
        .read_text()
        .endswith(
            "    def count(self):\n        if not self.items:\n            return 0\n"
            "        return len(self.items)\n"
        )
    )


def test_an_ambiguous_search_is_a_problem_not_a_guess(tree: Path) -> None:
    (tree / "shop" / "tax.py").write_text("x = 1\ny = 2\nx = 1\n")
    reply = "shop/tax.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 3\n>>>>>>> REPLACE\n"
    result = apply_edits(tree, parse_edits(reply).edits)
    assert [p.rule for p in result.problems] == ["edit.ambiguous"]
    problem = result.problems[0]
    assert "2 times" in problem.message and "lines 1, 3" in problem.message
    assert (tree / "shop" / "tax.py").read_text() == "x = 1\ny = 2\nx = 1\n"  # untouched


def test_a_diff_hunk_line_number_chooses_between_equal_places(tree: Path) -> None:
    (tree / "shop" / "tax.py").write_text("x = 1\ny = 2\nx = 1\n")
    reply = "--- a/shop/tax.py\n+++ b/shop/tax.py\n@@ -3 +3 @@\n-x = 1\n+x = 3\n"
    assert apply(tree, reply).ok
    assert (tree / "shop" / "tax.py").read_text() == "x = 1\ny = 2\nx = 3\n"
    wrong = "--- a/shop/tax.py\n+++ b/shop/tax.py\n@@ -2 +2 @@\n-x = 1\n+x = 4\n"
    (tree / "shop" / "tax.py").write_text("x = 1\ny = 2\nx = 1\n")
    result = apply_edits(tree, parse_edits(wrong).edits)
    assert [p.rule for p in result.problems] == ["edit.ambiguous"]


def test_a_search_that_is_not_found_reports_the_nearest_match(tree: Path) -> None:
    reply = """shop/cart.py
<<<<<<< SEARCH
    def total(self):
        return sum(i.price for i in self.items)
=======
    def total(self):
        return 0
>>>>>>> REPLACE
"""
    result = apply_edits(tree, parse_edits(reply).edits)
    (problem,) = result.problems
    assert problem.rule == "edit.no-match" and problem.file == "shop/cart.py"
    assert problem.nearest_line == 5 and 0.8 < problem.similarity < 1
    assert problem.nearest.splitlines()[0] == "    def total(self):"
    assert problem.search.startswith("    def total(self):")
    finding = problem.finding()
    assert isinstance(finding, Finding)
    assert (finding.rule, finding.file, finding.line) == ("edit.no-match", "shop/cart.py", 5)
    assert "Looked for:" in finding.message and "i.price for i in" in finding.message
    assert "Nearest match, line 5" in finding.message and "item.price" in finding.message
    assert (tree / "shop" / "cart.py").read_text() == CART


def test_edits_to_missing_files_and_creating_existing_ones_are_problems(tree: Path) -> None:
    reply = """shop/nothere.py
<<<<<<< SEARCH
x = 1
=======
x = 2
>>>>>>> REPLACE

shop/tax.py
<<<<<<< SEARCH
=======
RATE = 1
>>>>>>> REPLACE

--- a/shop/gone.py
+++ /dev/null
@@ -1 +0,0 @@
-x
"""
    result = apply_edits(tree, parse_edits(reply).edits)
    assert [(p.rule, p.file) for p in result.problems] == [
        ("edit.missing-file", "shop/nothere.py"),
        ("edit.file-exists", "shop/tax.py"),
        ("edit.missing-file", "shop/gone.py"),
    ]
    assert "empty SEARCH" in result.problems[0].message
    assert not (tree / "shop" / "nothere.py").exists()
    assert (tree / "shop" / "tax.py").read_text() == "RATE = 0.2\n"


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/etc/passwd", "absolute"),
        ("../outside.py", "goes up"),
        ("shop/../../outside.py", "goes up"),
        (".git/config", ".git"),
        ("shop/.git/hooks/pre-commit", ".git"),
        ("link/evil.py", "symlink out of the repository"),
        ("shop/alias.py", "is a symlink"),
        ("gitlink/config", "symlink into .git"),
    ],
)
def test_paths_outside_the_repository_are_refused(tree: Path, path: str, words: str) -> None:
    outside = tree.parent / "outside"
    outside.mkdir()
    os.symlink(outside, tree / "link")
    os.symlink("cart.py", tree / "shop" / "alias.py")
    os.symlink(".git", tree / "gitlink")
    reply = f"{path}\n<<<<<<< SEARCH\n=======\npwned = True\n>>>>>>> REPLACE\n"
    result = apply_edits(tree, parse_edits(reply).edits)
    assert [p.rule for p in result.problems] == ["edit.path-outside"], result.problems
    assert words in result.problems[0].message
    assert not list(outside.iterdir())
    assert (tree / ".git" / "config").read_text() == "[core]\n"
    assert (tree / "shop" / "cart.py").read_text() == CART


def test_a_symlink_to_a_folder_inside_the_repository_may_be_written_through(tree: Path) -> None:
    os.symlink("shop", tree / "store")
    reply = "store/new.py\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n"
    assert apply(tree, reply).ok
    assert (tree / "shop" / "new.py").read_text() == "x = 1\n"


def test_malformed_replies_are_problems(tree: Path) -> None:
    unclosed = parse_edits("shop/tax.py\n<<<<<<< SEARCH\nRATE = 0.2\n=======\nRATE = 1\n")
    assert [p.rule for p in unclosed.problems] == ["edit.malformed"] and not unclosed.edits
    nameless = parse_edits("Here it is:\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n")
    assert "no file path" in nameless.problems[0].message
    nothing = parse_edits("I think the code is fine as it is.")
    assert [p.rule for p in nothing.problems] == ["edit.none"]
    renamed = parse_edits("--- a/x.py\n+++ b/y.py\n@@ -1 +1 @@\n-a\n+b\n")
    assert "renam" in renamed.problems[0].message


def test_line_endings_of_a_crlf_file_are_kept(tree: Path) -> None:
    (tree / "shop" / "tax.py").write_bytes(b"RATE = 0.2\r\nNAME = 'vat'\r\n")
    reply = "shop/tax.py\n<<<<<<< SEARCH\nRATE = 0.2\n=======\nRATE = 0.3\n>>>>>>> REPLACE\n"
    assert apply(tree, reply).ok
    assert (tree / "shop" / "tax.py").read_bytes() == b"RATE = 0.3\r\nNAME = 'vat'\r\n"


def test_the_edits_that_apply_are_applied_and_the_rest_reported(tree: Path) -> None:
    reply = (
        "shop/tax.py\n<<<<<<< SEARCH\nRATE = 0.2\n=======\nRATE = 0.3\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nMISSING = 1\n=======\nMISSING = 2\n>>>>>>> REPLACE\n"
    )
    result = apply_edits(tree, parse_edits(reply).edits)
    assert result.applied == 1 and [p.rule for p in result.problems] == ["edit.no-match"]
    assert result.problems[0].message.startswith("edit 2:")
    assert (tree / "shop" / "tax.py").read_text() == "RATE = 0.3\n"


def test_the_format_text_a_prompt_quotes_describes_both_formats() -> None:
    assert "<<<<<<< SEARCH" in EDIT_FORMAT and ">>>>>>> REPLACE" in EDIT_FORMAT
    assert "--- /dev/null" in EDIT_FORMAT and "```diff" in EDIT_FORMAT
