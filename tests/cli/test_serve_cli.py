"""``dainr serve``'s own flags: bad values are one-line errors before the server binds or starts a worker."""

import pytest

from dainr.cli import main


@pytest.mark.timeout(120)  # a flag not refused would leave the server running
@pytest.mark.parametrize("args, words", [
    (["--concurrent-slices", "0"], "--concurrent-slices must be >= 1, got 0"),
    (["--batch-slices", "-1"], "--batch-slices must be >= 1, got -1"),
    (["--max-jobs", "0"], "--max-jobs must be >= 1"),
    (["--timeout", "0"], "--timeout, --stream-timeout, --max-time and --max-steps must be > 0"),
])
def test_bad_serve_flags_are_one_line_errors(args, words, capsys):
    assert main(["serve", "--port", "0", "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
