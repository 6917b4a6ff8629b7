"""walk8 F3-F7: a workdir of another config's run is refused without advice to move or
delete what that run wrote; workdir_lock never has two holders; class names that print alike
or break a line are refused."""

import shutil

from cli_support import assert_refused, config_file, run_commands, small_config

#: small_config(): 176 steps (22 an epoch, 8 epochs); epochs=6 ends at step 132.
CONFIG = small_config()


def test_another_config_on_a_finished_workdir_is_never_told_to_move_or_delete_it(
    small_trained_copy, tmp_path):
  """F3: rerun with another config, a finished workdir said to move its bundle away ('the
  same command then writes the run's own bundle'); done so, the same command said to delete
  the run's final checkpoint (step 176, past this run's 132). Both now name the config
  change and advise a new workdir or the run's own config, exit 2, nothing modified. A step
  of another run copied in after this run's own steps is still named, to take away."""
  workdir = small_trained_copy().parent
  moved = tmp_path / "moved"
  shutil.copytree(workdir, moved, symlinks=True)
  shutil.move(moved / "bundle", tmp_path / "kept_bundle")  # What the old advice said.
  other = config_file(tmp_path, small_config(epochs=6))
  ran = run_commands({name: dict(args=("train", "-q", "--config", other, "--workdir", w),
                                 watch=[w]) for name, w in (("finished", workdir),
                                                            ("moved", moved))})
  for name, w in (("finished", workdir), ("moved", moved)):
    line = assert_refused(ran[name].result, f"{w} holds a run with another config (epochs: 8 "
                                            "-> 6); use a new workdir to train this config, "
                                            "or the workdir's own config")
    advice = line.split(" holds a run ", 1)[1]
    assert "delete" not in advice and "move" not in advice, line
    assert ran[name].before == ran[name].after, name
