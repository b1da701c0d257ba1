"""DNA sequence models under the microscope: ISM, minimal edits, attributions, motifs, logos."""

from .io import ALPHABET, IUPAC, Sequences, as_sequences, decode, one_hot, read_fasta, reverse_complement
from .ism import saturation_mutagenesis

__all__ = ["ALPHABET", "IUPAC", "Sequences", "as_sequences", "decode", "one_hot", "read_fasta",
           "reverse_complement", "saturation_mutagenesis"]
