"""DNA sequence models under the microscope: ISM, minimal edits, attributions, motifs, logos.

Sequences come in as FASTA (Biopython ``SeqIO``), strings or records and go to one-hot tensors
(N, 4, L) in ``ACGT`` order; everything else takes those tensors (or sequences) and a model.
"""

from typing import TYPE_CHECKING

from probe.lazy import attach

if TYPE_CHECKING:  # these load on first use (probe.lazy), so that ``probe CMD --help`` stays fast
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

__getattr__, __dir__ = attach(
    __name__,
    submodules=["datasets"],
    submod_attrs={
        "attribution": ["attribute", "gradient_x_input", "integrated_gradients", "ism_attribution", "saliency"],
        "edits": ["MinimalEdits", "minimal_edits"],
        "fimo": ["scan_motifs"],
        "genome": ["Genome", "centred_windows", "read_bed", "tile_genome"],
        "hamming": ["hamming_report"],
        "io": ["ALPHABET", "IUPAC", "Sequences", "as_sequences", "decode", "one_hot", "read_fasta",
               "reverse_complement"],
        "ism": ["saturation_mutagenesis"],
        "models": ["fit", "small_cnn"],
        "motif_db": ["MotifSet", "jaspar_motifs", "motif_set"],
        "motifs": ["jaspar_collection", "match_motifs", "seqlets"],
        "plots": ["plot_ism", "plot_logo", "plot_window"],
        "regions": ["predict_windows", "region_ism"],
        "store": ["WindowStore"],
        "tomtom": ["annotate_seqlets", "seqlet_pwm", "tomtom"],
        "variants": ["read_vcf", "variant_effects", "variant_windows"],
    },
)
