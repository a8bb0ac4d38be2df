def test_only_edits_to_the_package_mark_a_commit_dirty(tmp_path) -> None:
    """A README or docs edit changes no trial's code: the trials of a sweep that spans it keep
    one code version; an edit under the package marks the commit ``-dirty``."""
    import subprocess

    from bench.measure.provenance import git_commit

    def commit() -> str | None:
        git_commit.cache_clear()  # a process reads its commit once
        return git_commit(tmp_path, scope=tmp_path / "pkg")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("hello\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    clean = commit()
    assert clean is not None and not clean.endswith("-dirty")
    (tmp_path / "README.md").write_text("hello again\n")
    assert commit() == clean
    (tmp_path / "pkg" / "code.py").write_text(
        "x = 2  # another size: git trusts a same-second stat\n"
    )
    assert commit() == f"{clean}-dirty"
