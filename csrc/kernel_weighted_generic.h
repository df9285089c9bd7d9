// The weighted multi-field scan (kernels.h) lane by lane, for the scalar and AVX2 kernels. Included
// inside an anonymous namespace of each translation unit, after that unit's popcount64, so every
// unit compiles its own copy with its own ISA flags (no shared inline code; see kernels.h).
inline void weighted_generic(const FieldBlocks* fields, int nfields, int64_t b0, int64_t b1, int64_t nq,
                             WeightedSink* const* sinks, uint32_t* scratch) {
    for (int64_t b = b0; b < b1; ++b)
        for (int64_t q = 0; q < nq; ++q) {
            double total[kBlock] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int f = 0; f < nfields; ++f) {
                const FieldBlocks& fb = fields[f];
                const uint64_t* blk = fb.blocks + b * kBlock * fb.words;
                const uint64_t* qv = fb.queries + q * fb.words;
                uint32_t* dist = scratch + f * kBlock;
                for (int l = 0; l < kBlock; ++l) dist[l] = 0;
                for (int w = 0; w < fb.words; ++w)
                    for (int l = 0; l < kBlock; ++l) dist[l] += popcount64(blk[w * kBlock + l] ^ qv[w]);
                for (int l = 0; l < kBlock; ++l) total[l] += fb.weight * dist[l];
            }
            uint32_t lanes = 0;
            for (int l = 0; l < kBlock; ++l)
                if (total[l] <= sinks[q]->bound) lanes |= 1u << l;
            if (lanes) sinks[q]->on_hits(sinks[q], b * kBlock, lanes, scratch);
        }
}
