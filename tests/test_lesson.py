"""ddpg.py reads as a lesson: the algorithm first, short and closed on itself, the engineering after one divider."""

import ast

import ddpg

DIVIDER = "# " + "=" * 112  # the line between the lesson and the engineering
MAX_LESSON_LINES = 600
ENGINEERING_NAMES = {"checked", "fast_path", "Run"}  # all the lesson calls below the divider: checks, fast path, books


def halves() -> tuple[str, str]:
    with open(ddpg.__file__) as f:
        source = f.read()
    lesson, _, engineering = source.partition(DIVIDER + "\n")
    assert engineering, "no divider"
    return lesson, engineering


def defined(tree: ast.Module) -> set[str]:
    """The names a module's top level defines: functions, classes, constants."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)}
    return names


def functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def names_in(node: ast.AST) -> set[str]:
    return {name.id for name in ast.walk(node) if isinstance(name, ast.Name)}


def test_the_lesson_fits_its_length():
    lesson, _ = halves()
    assert len(lesson.splitlines()) <= MAX_LESSON_LINES


def test_the_lesson_uses_three_names_of_the_engineering():
    lesson, engineering = halves()
    used = names_in(ast.parse(lesson)) & (defined(ast.parse(engineering)) - defined(ast.parse(lesson)))
    assert used == ENGINEERING_NAMES


def test_the_loop_reaches_the_critics_target_in_two_calls():
    lesson = ast.parse(halves()[0])
    nets = functions(lesson)
    assert "update" in names_in(nets["loop"])  # loop -> update
    calls = {c.func.id for c in ast.walk(nets["update"]) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
    assert "critic_loss" in calls  # update -> critic_loss, where y_i is set
    assigned = {t.id for node in ast.walk(nets["critic_loss"]) if isinstance(node, ast.Assign) for t in node.targets}
    assert "y" in assigned
    # and the whole update is on one screen: sample, y (through critic_loss), the critic's, actor's and targets' steps
    update = nets["update"]
    assert update.end_lineno - update.lineno < 40
    assert {"sample", "critic_loss", "actor_loss", "soft_update"} <= {
        c.func.attr if isinstance(c.func, ast.Attribute) else c.func.id
        for c in ast.walk(update)
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute | ast.Name)
    }


def test_the_replay_buffer_stores_a_transition_by_name():
    parameters = [arg.arg for arg in functions(ast.parse(halves()[0]))["add"].args.args]
    assert parameters == ["self", *ddpg.Batch._fields]
    rb = ddpg.ReplayBuffer(4, 3, 2, ddpg.torch.device("cpu"))
    assert all(getattr(rb, name).shape[0] == 4 for name in ddpg.Batch._fields)  # a named column for each
