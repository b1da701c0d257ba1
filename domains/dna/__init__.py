"""DNA sequence models under the microscope: ISM, minimal edits, attributions, motifs, logos.

Sequences come in as FASTA (Biopython ``SeqIO``), strings or records and go to one-hot tensors
(N, 4, L) in ``ACGT`` order; everything else takes those tensors (or sequences) and a model.
"""

from . import datasets
from .attribution import attribute, gradient_x_input, integrated_gradients, ism_attribution, saliency
from .edits import MinimalEdits, minimal_edits
from .fimo import scan_motifs
from .genome import Genome, centred_windows, read_bed, tile_genome
from .hamming import hamming_report
from .io import ALPHABET, IUPAC, Sequences, as_sequences, decode, one_hot, read_fasta, reverse_complement
from .ism import saturation_mutagenesis
from .models import fit, small_cnn
from .motif_db import MotifSet, jaspar_motifs, motif_set
from .motifs import jaspar_collection, match_motifs, seqlets
from .plots import plot_ism, plot_logo, plot_window
from .regions import predict_windows, region_ism
from .store import WindowStore
from .tomtom import annotate_seqlets, seqlet_pwm, tomtom
from .variants import read_vcf, variant_effects, variant_windows

__all__ = [
    "ALPHABET", "IUPAC", "Sequences", "as_sequences", "decode", "one_hot", "read_fasta", "reverse_complement",
    "saturation_mutagenesis", "minimal_edits", "MinimalEdits",
    "saliency", "gradient_x_input", "integrated_gradients", "ism_attribution", "attribute",
    "seqlets", "match_motifs", "jaspar_collection", "plot_logo", "plot_ism", "datasets", "small_cnn", "fit",
    "Genome", "read_bed", "centred_windows", "tile_genome", "read_vcf", "variant_effects", "variant_windows",
    "predict_windows", "region_ism", "WindowStore", "MotifSet", "jaspar_motifs", "motif_set", "tomtom",
    "annotate_seqlets", "seqlet_pwm", "scan_motifs", "plot_window",
]
__all__ += ["hamming_report"]
