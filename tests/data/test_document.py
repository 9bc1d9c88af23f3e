from fastllm.data.document import Document, utf8_length


def test_utf8_length_counts_bytes_not_characters():
    assert utf8_length("plain ascii") == 11
    assert utf8_length("café") == 5
    assert utf8_length("日本") == 6
    assert utf8_length("a\ud800b") == 5  # a lone surrogate counts as its 3 surrogatepass bytes
    assert Document("d", "s", "naïve").nbytes == 6
