"""The doctor's reading of the login shell probes."""

from __future__ import annotations

from globtim_hpc.workflows.loginshell import assess

WRAPPED_OK = "@@globtim-shell\n"


def test_a_posix_shell_is_ok() -> None:
    assert assess("/bin/bash\n", WRAPPED_OK) == ("ok", "/bin/bash (POSIX)", None)


def test_tcsh_is_named_as_not_posix_and_still_ok() -> None:
    status, detail, fix = assess("/bin/tcsh\n", WRAPPED_OK)
    assert status == "ok" and "not POSIX" in detail and fix is None


def test_startup_files_that_print_are_a_warning_with_the_fix() -> None:
    status, detail, fix = assess("Welcome!\n/bin/tcsh\n", "Welcome!\n" + WRAPPED_OK)
    assert status == "warn" and "Welcome!" in detail
    assert fix is not None and "$?prompt" in fix


def test_a_wrapped_command_that_does_not_run_fails_and_names_base64() -> None:
    status, _detail, fix = assess("/bin/tcsh\n", None)
    assert status == "fail" and fix is not None and "base64" in fix
