"""walk7 F5: import_params' class names in Python as on the command line: None is no
names, a str is not split into characters, a name that is not a str, has space around it
or holds a control character is refused naming the class; the command line says an empty
--class-names is empty, and a trailing comma that makes one name too many is named."""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_support import assert_refused, run_commands
from mnemonic_jax import checkpointing, errors
from mnemonic_jax.models import create_model

NAMES = tuple("abc")


def _import(tmp_path, class_names, name="out"):
  params = create_model("mlp", 3, hidden=(4,)).init(jax.random.key(0), jnp.zeros((1, 2, 2, 1)))
  path = tmp_path / "p.msgpack"
  path.write_bytes(flax.serialization.to_bytes(params))
  return checkpointing.import_params(
      path, np.zeros((3, 2, 2, 1), np.float32), model_name="mlp", model_kwargs={"hidden": (4,)},
      num_classes=3, input_shape=(2, 2, 1), output=tmp_path / name, mean=(0.0,), std=(1.0,),
      class_names=class_names)


@pytest.mark.filterwarnings("ignore::mnemonic_jax.checkpointing.CodesNotLearnedWarning")
def test_import_params_class_names(tmp_path):
  out = _import(tmp_path, None)  # Was a TypeError: 'NoneType' object is not iterable.
  assert checkpointing.load_bundle(out).class_names == ()
  refused = {
      "abc": (errors.BadRequestType, "a sequence of str.*got str 'abc'"),
      ("a", "b", None): (errors.BadRequestType, "class 2 is None of type NoneType, not a str"),
      ("a", "b", 2): (errors.BadRequestType, "class 2 is 2 of type int"),
      ("a", "b", "b "): (checkpointing.CheckpointError, "class 2, 'b ', has space around it"),
      ("a", " c", "b"): (checkpointing.CheckpointError, "class 1, ' c', has space around it"),
      ("a", "b", "c\nd"): (checkpointing.CheckpointError, r"class 2, 'c\\nd', holds a control"),
      ("a", "b", "c\td"): (checkpointing.CheckpointError, "holds a control character"),
  }
  for names, (error, words) in refused.items():
    with pytest.raises(error, match=words):
      _import(tmp_path, names, name="refused")
    assert not (tmp_path / "refused").exists()


def test_import_command_class_names_messages(tmp_path):
  codes = tmp_path / "codes.npy"
  np.save(codes, np.zeros((10, 8, 8, 1), np.float32))
  out = tmp_path / "out"
  imported = ("import", "--model", "mlp", "--params", tmp_path / "p.msgpack", "--codes", codes,
              "--num-classes", "10", "--input-shape", "8,8,1", "--mean", "0", "--std", "1",
              "--output", out, "--class-names")
  words = {"": "argument --class-names: is empty (an unset shell variable?); give a name",
           " ": "argument --class-names: is empty (an unset shell variable?)",
           "a,b,c,d,e,f,g,h,i,j,": "has 11 names for 10 classes, one of them empty (a "
                                   "trailing or doubled comma?)",
           "a,b,c": "has 3 names for 10 classes; give one name per class"}
  ran = run_commands({value: dict(args=(*imported, value), cwd=tmp_path, watch=[tmp_path])
                      for value in words})
  for value, said in words.items():
    assert_refused(ran[value].result, said)
    assert ran[value].before == ran[value].after, value
