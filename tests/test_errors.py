"""dainr.errors: the one formatter every front end uses to turn a failure into one line."""

from __future__ import annotations

import pickle

from dainr.errors import InputError, NoImagingData, error_line, one_line
from dainr.server.workers import InternalError, JobCancelled
from dainr.stream.protocol import PeerClosed


def test_user_errors_give_their_message_on_one_line():
    assert error_line(InputError("bad traj:\n  store it in cycles/pixel")) == "bad traj: store it in cycles/pixel"
    assert isinstance(NoImagingData("x"), InputError)
    assert error_line(JobCancelled()) == "the reconstruction was cancelled"
    assert error_line(PeerClosed("the client closed the connection", truncated=True)) == \
        "the client closed the connection"
    assert error_line(InternalError.of("ValueError")) == ("internal error in the reconstruction (ValueError); the "
                                                         "server log has the details")


def test_anything_else_is_an_internal_error_with_its_type_and_first_line():
    assert error_line(ValueError("  first line\nsecond line")) == "internal error: ValueError: first line"
    assert error_line(KeyError()) == "internal error: KeyError"
    assert one_line("a\n\tb  c ") == "a b c"


def test_peer_closed_survives_the_worker_pipe():
    back = pickle.loads(pickle.dumps(PeerClosed("gone")))
    assert str(back) == "gone" and isinstance(back, ConnectionError)
