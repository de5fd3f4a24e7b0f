# Training targets: `snakemake --cores 2 train` (every shipped model) or train_localizer / train_regressor /
# a segmentation scorer by its output (results/models/<model>/weights.pt, <model> one of SEGMENTER_TRAININGS:
# unetpp, unet for the comparison, levels, lstm, patch3d).
# They write <training.out>/<model>/{weights.pt,model_card.json}; point config `models:` there to use them.


rule train_localizer:
    """Heart localizer (three plane ConvNets) on the labelled training cohort; weights + model card."""
    input:
        training_inputs,
    output:
        weights=f"{TRAIN_OUT}/localizer/weights.pt",
        card=f"{TRAIN_OUT}/localizer/model_card.json",
    log:
        "logs/train/localizer.log",
    benchmark:
        "logs/benchmarks/train/localizer.tsv"
    conda:
        "../../envs/cacflow-gpu.yaml"
    threads: config["sharding"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["sharding"]["threads"],
        mem_mb=16000,
        runtime=240,
    params:
        root=lambda wc: root_of(TRAIN_COHORT),
        labels=lambda wc: labels_of(TRAIN_COHORT),
        training=lambda wc: config["training"],
    script:
        "../scripts/train.py"


rule train_regressor:
    """Regression ConvNet (ln(y+1) targets, trained in the stages of training.regressor.stages) on the training cohort."""
    input:
        training_inputs,
        regressor_start,
        localizer=f"{TRAIN_OUT}/localizer/weights.pt",
    output:
        weights=f"{TRAIN_OUT}/regressor/weights.pt",
        card=f"{TRAIN_OUT}/regressor/model_card.json",
    log:
        "logs/train/regressor.log",
    benchmark:
        "logs/benchmarks/train/regressor.tsv"
    conda:
        "../../envs/cacflow-gpu.yaml"
    threads: config["sharding"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["sharding"]["threads"],
        mem_mb=16000,
        runtime=480,
    params:
        root=lambda wc: root_of(TRAIN_COHORT),
        labels=lambda wc: labels_of(TRAIN_COHORT),
        training=lambda wc: config["training"],
    script:
        "../scripts/train.py"


rule train_segmenter:
    """A segmentation scorer on the training cohort, by its folder name: the vessel-specific U-Net++ (unetpp) or
    plain U-Net (unet), the kernel-robust calcification levels (levels, on the soft/sharp pairs), the 2.5D
    conv-LSTM (lstm) or the 3D patch U-Net (patch3d)."""
    input:
        training_inputs,
        localizer=f"{TRAIN_OUT}/localizer/weights.pt",
    output:
        weights=f"{TRAIN_OUT}/{{model}}/weights.pt",
        card=f"{TRAIN_OUT}/{{model}}/model_card.json",
    log:
        "logs/train/{model}.log",
    benchmark:
        "logs/benchmarks/train/{model}.tsv"
    wildcard_constraints:
        model="|".join(SEGMENTER_TRAININGS),
    conda:
        "../../envs/cacflow-gpu.yaml"
    threads: config["sharding"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["sharding"]["threads"],
        mem_mb=16000,
        runtime=480,
    params:
        root=lambda wc: root_of(TRAIN_COHORT),
        labels=lambda wc: labels_of(TRAIN_COHORT),
        training=lambda wc: config["training"],
    script:
        "../scripts/train.py"


rule train:
    """Every shipped model of the training cohort (the plain U-Net comparison: `snakemake results/models/unet/weights.pt`)."""
    input:
        rules.train_localizer.output,
        rules.train_regressor.output,
        expand(f"{TRAIN_OUT}/{{model}}/weights.pt", model=[m for m in SEGMENTER_TRAININGS if m != "unet"]),
