"""Where each validation case's reference data come from: the data, their origin, their creators, the licence or
terms the origin states, what to cite and what mcproton changed.

The report prints them under each case and in its section "Reference data: sources and licences", summary.json
carries them per case (``reference_sources``) and validation/REPORT.md lists them, so that a report that is shared
(a clinic's commissioning report is meant to be) keeps the attribution the data's licences ask for.  CC BY 4.0
(the DCPT data of ``dcpt_plan02``), section 3(a): name the creators, the licence with its link, the source, and
say what was changed.  Each case's heading and the figures that plot its reference data carry the short form
(:attr:`Source.short`, :func:`figure_credit`); the section lists the rest.

THIRD_PARTY_NOTICES.md at the repository root lists every third-party file that mcproton ships, with the notices.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

CC_BY_4_0 = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"


@dataclass(frozen=True)
class Source:
    """One set of third-party reference data of a case."""

    data: str          #: what the data are, as the case uses them
    origin: str        #: where they come from (repository @ commit: path, or the publication/database)
    creators: str      #: whom the licence or good practice asks to name
    licence: str       #: the licence or terms as the origin states them, and how mcproton treats the data
    short: str         #: source, creators, licence and DOI in a few words: under the case's heading and its figures
    cite: str = ""     #: what to cite (DOI where there is one)
    changes: str = ""  #: what mcproton changed (CC BY asks for it)

    def text(self) -> str:
        """The attribution as one line of plain text."""
        parts = [f"{self.data}: {self.creators}", f"source: {self.origin}", f"licence: {self.licence}"]
        if self.cite:
            parts.append(f"cite: {self.cite}")
        if self.changes:
            parts.append(f"changes: {self.changes}")
        return "; ".join(parts) + "."

    def to_json(self) -> dict[str, str]:
        return asdict(self) | {"text": self.text()}


APTG_DCPT = Source(
    data="DCPT plan02: depth profiles of dose to medium and of the LETd of protons from five Monte Carlo codes "
         "(SHIELD-HIT12A, OpenShieldHIT, FLUKA, MCNP6, TOPAS), the RT Ion Plan RN_plan02_mono.dcm and DCPT's "
         "pencil-beam model dcpt_v2 it runs through",
    origin="github.com/APTG/2022_DCPT_LET @ 62db608b4e72ce92a6ae07886226270fd3f55b39 (data/resources/plans/"
           "plan02_mono/, the codes' plan02 results, data/resources/dcpt_beam_model/)",
    creators="N. Bassler, L. Grzanka, J. B. Christensen, H. Brkić, Y. Perrot, L. Pasariček, M. Romero-Expósito, "
             "M. L. Jensen (the data set's CITATION.cff); beam model: A. Vestergaard, P. Lægdsmand, S. Norrig, "
             "Danish Centre for Particle Therapy",
    licence=CC_BY_4_0,
    cite="Bassler N et al. (2024), MC particle transport simulations for the 2022 LET-measurements at DCPT, "
         "v1.0.0 [data set], Zenodo, doi:10.5281/zenodo.10641085",
    changes="three columns kept of each code's depth file (rows and values unchanged); the beam model's v2 and v5 "
            "tables joined into one CSV with FWHM columns added; the curves re-plotted beside mcproton's; the "
            "plan file unchanged",
    short="APTG/2022_DCPT_LET, Bassler et al. 2024, doi:10.5281/zenodo.10641085, CC BY 4.0 (subset, re-plotted)")

MATRAD_TOPAS = Source(
    data="TOPAS (Geant4) integrated depth-dose curves of proton pencil beams in water (15 of the 96 energies) and "
         "their range metrics",
    origin="github.com/e0404/matRad @ c014dc82d620bace0836eb8cc420fe33c19cdb87: "
           "matRad/basedata/protons_generic_TOPAS.mat",
    creators="L. N. Burigo, N. Homolka, N. Wahl (German Cancer Research Center DKFZ; the file's meta data), "
             "matRad development team",
    licence="the matRad repository is GPL-3.0-or-later (its LICENSE.md); mcproton takes these Monte Carlo "
            "results as facts, with attribution, and does not ship matRad's files (THIRD_PARTY_NOTICES.md, "
            "'matRad')",
    cite="Wieser H-P et al., Med Phys 44 (2017) 2556-2568, doi:10.1002/mp.12251 (matRad)",
    changes="read from the .mat file into CSV; a subset of the energies (rows unchanged); range metrics derived "
            "by mcproton",
    short="TOPAS base data of matRad (e0404/matRad @ c014dc8, a GPL-3.0-or-later repository; Burigo, Homolka, "
          "Wahl, DKFZ)")

PSTAR = Source(
    data="NIST PSTAR stopping powers and CSDA ranges (the tables of ICRU Report 49, 1993)",
    origin="NIST Standard Reference Database 124 (https://physics.nist.gov/PhysRefData/Star/Text/PSTAR.html); "
           "the files as retrieved from github.com/DaitTHU/Radiation @ 2629d2662865b396c23c6d0524886d3f662dd487 "
           "(the NIST web output, verbatim)",
    creators="M. J. Berger, J. S. Coursey, M. A. Zucker, J. Chang (NIST)",
    licence="NIST Standard Reference Data; no licence is stated in the copy retrieved; mcproton uses the "
            "published values with this citation",
    cite="doi:10.18434/T4NC7P",
    changes="converted to CSV with a provenance header; values unchanged",
    short="NIST PSTAR (SRD 124, Berger et al., doi:10.18434/T4NC7P)")

ICRU90 = Source(
    data="ICRU Report 90 stopping powers and CSDA ranges of protons in water",
    origin="ICRU Report 90 (2016), Key Data for Ionizing-Radiation Dosimetry, J. ICRU 14(1), Appendix Table A.9; "
           "read from github.com/APTG/libdedx @ f3cf313a722ea91f154ee41ca375b4e5e8f47dcd (data/raw/"
           "icru_90_raw.txt); the electronic column equals Geant4's G4ICRU90StoppingData.cc",
    creators="International Commission on Radiation Units and Measurements (ICRU)",
    licence="published reference values of an ICRU report; libdedx, the repository they were read from, is "
            "GPL-3.0; mcproton takes the values as facts, with this citation (THIRD_PARTY_NOTICES.md)",
    cite="ICRU Report 90, J. ICRU 14(1) (2016)",
    changes="converted to CSV; PDF-extraction artefacts of the text file undone; values unchanged",
    short="ICRU Report 90 (2016), read from APTG/libdedx")

CATANA = Source(
    data="Bragg curve measured with an ionisation chamber in water, 62 MeV, CATANA eye-therapy line "
         "(INFN-LNS, Catania)",
    origin="Geant4 example examples/advanced/hadrontherapy/experimentalData/proton/BraggPeak/"
           "experimental62MeVProtonBraggPeak.out, github.com/Geant4/geant4 @ "
           "b4a16de652ec244f7a0ecc0a5cacfee21930bf75",
    creators="INFN-LNS Catania (G. A. P. Cirrone et al.), the Geant4 hadrontherapy example",
    licence="Geant4 Software License 1.0 (the file is part of the Geant4 distribution); its notice and "
            "acknowledgement are in THIRD_PARTY_NOTICES.md",
    cite="G. A. P. Cirrone et al., IEEE NSS Conf. Rec. 2003, 3, 1756-1758",
    changes="converted to CSV with a provenance header; values unchanged",
    short="CATANA (INFN-LNS Catania) Bragg curve of the Geant4 hadrontherapy example, Geant4 Software License")

BORTFELD = Source(
    data="parameters of Bortfeld's analytical Bragg curve in water (for the energy fit)",
    origin="T. Bortfeld, Med. Phys. 24 (1997) 2024-2033; values as in plastimatch @ 100148e and pybragg @ 340573e, "
           "which agree",
    creators="T. Bortfeld",
    licence="numbers of a publication, used as facts with this citation",
    short="Bortfeld 1997, Med. Phys. 24:2024",
    cite="Bortfeld T, Med. Phys. 24 (1997) 2024-2033")

NIST_COMPOSITIONS = Source(
    data="compositions, densities and I-values of the ICRU 49 compounds (PMMA, polyethylene, polystyrene, A-150, "
         "B-100)",
    origin="NIST ESTAR/PSTAR material composition data (NIST SRD 124), as in mcproton/data/materials/materials.csv",
    creators="M. J. Berger et al. (NIST); ICRU Reports 37 and 49",
    licence="published reference values, used as facts with this citation",
    short="NIST compositions and ICRU 49 I-values (SRD 124, doi:10.18434/T4NC7P)",
    cite="doi:10.18434/T4NC7P")

SCHNEIDER = Source(
    data="the Schneider 2000 tissue table (24 HU bins with elemental compositions, and the HU-density fit)",
    origin="Schneider, Bortfeld & Schlegel, Phys. Med. Biol. 45 (2000) 459-478; machine-readable from "
           "github.com/OpenGATE/opengate @ d37427e2 (Schneider2000MaterialsTable.txt) and, for the density fit, "
           "github.com/OpenTOPAS/OpenTOPAS @ 80f5a52 (examples/Patient/HUtoMaterialSchneider.txt)",
    creators="W. Schneider, T. Bortfeld, W. Schlegel",
    licence="numbers of a publication, used as facts with this citation (the rows and sections that OpenGATE and "
            "OpenTOPAS added to the paper's are not used)",
    short="Schneider et al. 2000, Phys. Med. Biol. 45:459",
    cite="doi:10.1088/0031-9155/45/2/314")

#: the third-party reference data of each case (a case not listed has none: analytical references,
#: self-consistency or a conservation law)
CASE_SOURCES: dict[str, tuple[Source, ...]] = {
    "stopping_power": (PSTAR, ICRU90),
    "ranges_water": (ICRU90, PSTAR, MATRAD_TOPAS),
    "topas_idd": (MATRAD_TOPAS,),
    "catana_62mev": (CATANA, BORTFELD, ICRU90),
    "heterogeneity_slabs": (PSTAR, ICRU90),
    "lateral_spread": (ICRU90,),
    "range_shifter": (PSTAR, ICRU90),
    "dcpt_plan02": (APTG_DCPT,),
    "tissue_spr": (NIST_COMPOSITIONS, SCHNEIDER),
}

#: the heading of the reports' list of the reference data's sources and licences (report.html, REPORT.md)
SOURCES_HEADING = "Reference data: sources and licences"

#: the first words of that section
SOURCES_NOTE = ("The reference data shown in this report are the work of the creators below, under the licence each "
                "states; keep this section with the report or any figure taken from it. mcproton itself is "
                "Apache-2.0 (LICENSE); THIRD_PARTY_NOTICES.md in its source lists every third-party file it ships.")

#: what the report says of a case without third-party reference data
NO_THIRD_PARTY = "none (the references are analytical, the engine itself, or a conservation law)"


def case_sources(name: str) -> tuple[Source, ...]:
    """The third-party reference data of the case ``name`` (empty for a case with none, or an unknown name)."""
    return CASE_SOURCES.get(name, ())


def figure_credit(name: str) -> str:
    """The credit under the figures of the case ``name`` that plot its reference data ("" if it has none)."""
    shorts = [s.short for s in case_sources(name)]
    return ("Reference data: " + "; ".join(shorts)) if shorts else ""
