"""The project's label values (see the package docstring)."""
TUMOUR_LABELS = {0: "none", 1: "necrotic / non-enhancing core", 2: "oedema", 3: "enhancing tumour"}
ANATOMY_LABELS = {0: "background", 1: "CSF", 2: "ventricles", 3: "grey matter", 4: "white matter"}

NECROTIC, OEDEMA, ENHANCING = 1, 2, 3
BACKGROUND, CSF, VENTRICLES, GREY, WHITE = 0, 1, 2, 3, 4
