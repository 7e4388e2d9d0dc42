"""File names on the run page wrap between their parts, never inside one, and stay escaped."""

from batches.templatetags.names import breakable


def test_a_long_name_may_wrap_after_each_separator_only():
    assert breakable("return_photo-2026.jpg") == "return_<wbr>photo-<wbr>2026.<wbr>jpg"
    assert breakable("plain") == "plain"


def test_a_hostile_name_is_escaped():
    assert breakable("<script>x_y</script>.jpg") == "&lt;script&gt;x_<wbr>y&lt;/script&gt;.<wbr>jpg"
