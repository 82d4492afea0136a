"""deploy.sh's FIRESTORE_BACKUP_RETENTION: gcloud's `--retention` reads a number without a
unit as seconds, so `7` (meant as days, as the docs speak of them) would keep each daily backup
seven seconds. The script refuses a bare number (0 excepted: no daily backups) before its first
command, and passes on the durations gcloud takes (`7d`, `168h`, `1w`, `P7D`, ...)."""

from __future__ import annotations

import pytest

from .test_scripts import mutations


@pytest.mark.parametrize("value", ["7", "30", "7.5", "00", "604800"])
def test_a_bare_number_stops_the_script_before_anything_runs(standin, value) -> None:
    gc = standin("nothing")
    proc = gc.run("deploy.sh", FIRESTORE_BACKUP_RETENTION=value)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    (error,) = errors
    assert f"FIRESTORE_BACKUP_RETENTION={value} " in error
    assert "seconds" in error and "FIRESTORE_BACKUP_RETENTION=7d" in error
    assert mutations(gc.calls()) == []


@pytest.mark.parametrize("value", ["7days", "7 d", "d", "P", "0d", "-1d", "7d,"])
def test_what_is_no_duration_stops_the_script_too(standin, value) -> None:
    gc = standin("nothing")
    proc = gc.run("deploy.sh", FIRESTORE_BACKUP_RETENTION=value)
    assert proc.returncode == 2, proc.stderr
    assert "FIRESTORE_BACKUP_RETENTION" in proc.stderr and "7d" in proc.stderr
    assert mutations(gc.calls()) == []


@pytest.mark.parametrize("value", ["7d", "7D", "168h", "1w", "1d12h", "P7D", "PT168H", "604800s"])
def test_a_duration_passes_the_check(standin, value) -> None:
    """Quick: RAW_RETENTION_DAYS=1 stops the script at the check that follows this one, so
    the value passed this check (and nothing ran)."""
    gc = standin("nothing")
    proc = gc.run("deploy.sh", FIRESTORE_BACKUP_RETENTION=value, RAW_RETENTION_DAYS="1")
    assert proc.returncode == 2, proc.stderr
    assert "FIRESTORE_BACKUP_RETENTION" not in proc.stderr
    assert "RAW_RETENTION_DAYS must be at least 14" in proc.stderr
    assert mutations(gc.calls()) == []


@pytest.mark.slow
def test_a_duration_reaches_the_backup_schedule(standin) -> None:
    gc = standin("nothing")
    proc = gc.run("deploy.sh", "--dry-run", FIRESTORE_BACKUP_RETENTION="P7D")
    assert proc.returncode == 0, proc.stderr
    (schedule,) = [
        line for line in proc.stdout.splitlines() if "firestore backups schedules create" in line
    ]
    assert "--retention=P7D " in schedule and "--recurrence=daily" in schedule


@pytest.mark.slow
def test_zero_turns_the_daily_backups_off(standin) -> None:
    gc = standin("nothing")
    proc = gc.run("deploy.sh", "--dry-run", FIRESTORE_BACKUP_RETENTION="0")
    assert proc.returncode == 0, proc.stderr
    assert "firestore backups schedules create" not in proc.stdout
    assert "FIRESTORE_BACKUP_RETENTION=0" in proc.stderr  # the skip says why
