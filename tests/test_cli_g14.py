"""walk5 G14, through the real command: option messages that named the wrong thing, class
names a report would print blank or alike, and a compilation cache named but unusable."""

import numpy as np

from cli_support import assert_refused, run_commands


def test_g14_option_messages_names_and_an_unusable_cache(tmp_path):
  codes = tmp_path / "codes.npy"
  np.save(codes, np.zeros((3, 8, 8, 1), np.float32))
  (tmp_path / "a_file").write_text("")
  out = tmp_path / "out"
  imported = ("import", "--model", "mlp", "--params", tmp_path / "p.msgpack", "--codes", codes,
              "--num-classes", "3", "--input-shape", "8,8,1", "--mean", "0", "--std", "1",
              "--output", out, "--class-names")
  cases = {
      "abbreviated": ("forget", "-q", "--check", "b", "--class", "3", "--out", out),
      "one_unknown": ("forget", "-q", "--checkpoint", "b", "--classes", "3", "--output", out,
                      "--forc"),
      "split": ("evaluate", "-q", "--checkpoint", "b", "--split", ""),
      "model": ("import", "--model", ""),
      "blank_name": (*imported, "a,b,"),
      "same_names": (*imported, "a,a,b"),
      "cache": ("evaluate", "-q", "--checkpoint", "b", "--compilation-cache",
                tmp_path / "a_file" / "cache"),
  }
  ran = run_commands({name: dict(args=args, cwd=tmp_path, watch=[tmp_path])
                      for name, args in cases.items()})
  words = {
      "abbreviated": "unrecognized arguments: --check --class --out (did you mean "
                     "--checkpoint or --classes or --output? options are not abbreviated); "
                     "the following arguments are required: --checkpoint, --classes, --output",
      "one_unknown": "unrecognized arguments: --forc (did you mean --force?",
      "split": "argument --split: is empty (an unset shell variable?); give a name, e.g. test",
      "model": "argument --model: is empty (an unset shell variable?); give a name, e.g. mlp",
      "blank_name": "the name of class 2 is empty (a trailing or doubled comma?)",
      "same_names": "the class name 'a' is given 2 times",
      "cache": f"--compilation-cache {tmp_path / 'a_file' / 'cache'} cannot be used as the "
               "compilation cache: Not a directory",
  }
  for name, said in words.items():
    assert_refused(ran[name].result, said)
    assert ran[name].before == ran[name].after, name
